"""Extra tags: templates a chain layer or a mission image is also tagged with.

A template is either a tag (``{environment}-{commit}``: the stage's own
repository) or a full reference (``notebook-common:latest``, with ``:``), with
these placeholders:

- ``{environment}``: the selected environment;
- ``{commit}``: the short git commit of the checkout holding deployments/;
- ``{date}``: today's UTC date, ``YYYYMMDD``;
- ``{key}``: the first 12 hex digits of the stage's input key.

Extra tags are names only: they are never part of a key, so adding, changing
or moving one never rebuilds.
"""

from __future__ import annotations

import datetime
import functools
import re
import string
from pathlib import Path

from pipeline.errors import PipelineError

PLACEHOLDERS = ("environment", "commit", "date", "key")
_SAMPLE = {"environment": "sandbox", "commit": "0123abc", "date": "20260101", "key": "0123456789ab"}
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def problem(template: str) -> str | None:
    """Why ``template`` is not a valid extra-tag template, or None."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        return f"{exc}"
    unknown = [n for n in names if n not in PLACEHOLDERS]
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
    sample = template.format(**_SAMPLE)
    repository, tag = split(sample, "example/repo")
    if not _TAG.match(tag):
        return "a tag is letters, digits, '_', '.', '-' (up to 128 characters)"
    if not _REPOSITORY.match(repository):
        return f"{repository!r} is not a repository name (lowercase letters, digits, '.', '_', '-', '/')"
    return None


def split(reference: str, repository: str) -> tuple[str, str]:
    """(repository, tag) of a rendered template; a bare tag belongs to ``repository``."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return repository, reference
    return name, tag


def render(template: str, *, repository: str, environment: str, key: str, root: Path) -> str:
    """The full ``REPOSITORY:TAG`` reference ``template`` names now.

    Raises:
        PipelineError: ``{commit}`` is used outside a git checkout.
    """
    values = {"environment": environment, "key": key.partition(":")[2][:12] or key[:12], "date": "", "commit": ""}
    if "{date}" in template:
        values["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    if "{commit}" in template:
        values["commit"] = commit(root)
    repo, tag = split(template.format(**values), repository)
    return f"{repo}:{tag}"


@functools.lru_cache(maxsize=8)
def commit(root: Path) -> str:
    """The short commit of the git checkout holding ``root`` (once per process).

    Raises:
        PipelineError: not a git checkout, or git is missing.
    """
    from pipeline.errors import CommandFailed
    from pipeline.run import run

    try:
        return run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], hint="apt-get install -y git").output.strip()
    except CommandFailed:
        raise PipelineError(f"an extra tag uses {{commit}}, but {root} is not in a git checkout with a commit; "
                            "commit it, or drop {commit} from the tag template") from None

"""The release stage: tag every selected deployment's promoted image and the git commit."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import CommandFailed, PipelineError
from pipeline.run import run
from pipeline.settings import Settings
from pipeline.stages.publish import promote

log = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ReleaseResult:
    tag: str
    images: tuple[str, ...]
    commit: str

    def values(self) -> dict[str, Any]:
        return {"tag": self.tag, "images": list(self.images), "commit": self.commit}


def git(root: Path, *args: str) -> str:
    return run(["git", "-C", str(root), *args], hint="apt-get install -y git").output.strip()


def check_repository(settings: Settings, root: Path, tag: str) -> str:
    """Refuse unless on the release branch, clean, and in sync with its upstream; returns HEAD.

    Raises:
        PipelineError: naming what is wrong and what to do.
    """
    want = settings.release.branch
    try:
        branch = git(root, "rev-parse", "--abbrev-ref", "HEAD")
    except CommandFailed:
        raise PipelineError(f"{root} is not a git checkout; run it from the project's repository") from None
    if branch != want:
        raise PipelineError(f"on branch {branch!r}, releases come from {want!r}; `git checkout {want}` first")
    if git(root, "status", "--porcelain", "--untracked-files=no"):
        raise PipelineError("the working tree has uncommitted changes; commit or stash them first")
    try:
        upstream = git(root, "rev-parse", "--abbrev-ref", f"{want}@{{upstream}}")
    except CommandFailed:
        raise PipelineError(f"branch {want} has no upstream; `git push -u origin {want}` first") from None
    remote = upstream.split("/", 1)[0]
    try:
        git(root, "fetch", "--quiet", remote)
    except CommandFailed as exc:
        raise PipelineError(f"cannot fetch {remote} to compare with it: {str(exc).splitlines()[-1].strip()}") from None
    counts = git(root, "rev-list", "--left-right", "--count", f"HEAD...{upstream}").split()
    ahead, behind = int(counts[0]), int(counts[1])
    if ahead or behind:
        raise PipelineError(
            f"{want} is not in sync with {upstream} ({ahead} ahead, {behind} behind); push or pull first"
        )
    if git(root, "tag", "--list", tag):
        raise PipelineError(f"git tag {tag} already exists; choose a new version")
    return git(root, "rev-parse", "HEAD")


def release(settings: Settings, tag: str | None, root: Path | None = None) -> ReleaseResult:
    """Tag the promoted image of each selected deployment as ``tag`` (registry-side) and tag HEAD in git.

    Raises:
        PipelineError: bad tag, repository not ready, or a registry refused.
    """
    if not tag or not _TAG.match(tag):
        raise PipelineError(f"give a tag (letters, digits, '_', '.', '-'): doit release -- v1.2.3 (got {tag!r})")
    root = root or settings.deployments_dir.parent
    head = check_repository(settings, root, tag)
    from pipeline.stages.verify import require_signed  # every image passes the gate before any tag moves

    for dep in settings.deployments:
        require_signed(settings, dep, dep.tag("promoted", settings.environment), "release")
    images = []
    for dep in settings.deployments:
        result = promote(settings, dep, source=dep.tag("promoted", settings.environment), target=tag)
        images.append(result.ref)
    git(root, "tag", "-a", tag, "-m", f"Release {tag}: " + ", ".join(images))
    log.info("release: tagged %s as %s", head[:12], tag)
    if settings.release.push_tag:
        upstream = git(root, "rev-parse", "--abbrev-ref", f"{settings.release.branch}@{{upstream}}")
        git(root, "push", "--quiet", upstream.split("/", 1)[0], f"refs/tags/{tag}")
        log.info("release: pushed tag %s", tag)
    return ReleaseResult(tag, tuple(images), head)

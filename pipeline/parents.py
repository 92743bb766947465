"""Every image stage builds FROM the parent the pipeline gives it.

The parent is passed as a build arg: ``BASE_IMAGE``, or the arg a chain entry
or deployment names with ``base_arg`` (docker-stacks' ``BASE_CONTAINER``, the
seed's ``ROOT_CONTAINER``).  The final stage's FROM must resolve to it.  A
FROM that resolves to anything else (an ARG default such as a stray local
``ubuntu:jammy``, a literal image) would build on an image the key does not
cover, so it is refused with ``file:line``, what it resolved to, and what to set.

``check_parents`` runs when the configuration is loaded, so such a Dockerfile
stops the run before any stage builds.  A stage whose Dockerfile parts, spec and
checking code are unchanged since its last pass (the stat memo, as for keys) is
not parsed again: a no-op loads no Dockerfile model.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

from pipeline import statmemo
from pipeline.errors import ConfigError
from pipeline.hashing import sha256_text
from pipeline.plan import ImageSpec, chain_specs, mission_spec
from pipeline.render import read_sources, render
from pipeline.settings import Settings
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.dockerfile.analysis import Analysis, ModelError
    from pipeline.dockerfile.parser import Instruction

PLACEHOLDER_ID = "sha256:" + "0" * 64
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def locate(spec: ImageSpec, line: int) -> str:
    """``file:line`` of a line of the rendered Dockerfile (its parts are concatenated in order)."""
    first = 1
    for path in spec.sources:
        try:
            count = len(path.read_text(encoding="utf-8").splitlines())
        except OSError:
            break
        if line < first + count:
            return f"{display(path)}:{line - first + 1}"
        first += count
    return f"{display(spec.rendered_path)}:{line}"


def parent_problem(model: Analysis, parent_id: str, spec: ImageSpec) -> ModelError | None:
    """None when the final stage builds FROM ``parent_id``; else the refusal, at the final FROM's line."""
    if model.final_base == parent_id:
        return None
    return _refusal(model.instructions, model.final_line, model.final_base, parent_id, spec)


def _refusal(instructions: tuple[Instruction, ...], line: int, base: str, parent_id: str,
             spec: ImageSpec) -> ModelError:
    from pipeline.dockerfile.analysis import ModelError

    written = next((i.rest.split()[0] for i in instructions
                    if i.line == line and i.keyword == "FROM" and i.rest.split()), base)
    names = _VARIABLE.findall(written)
    if names and names[0] != spec.parent_arg:
        fix = f"set `base_arg: {names[0]}` on {spec.where}" if spec.where else f"pass the parent as {names[0]}"
    else:
        fix = f"start it with `ARG {spec.parent_arg}` and `FROM ${{{spec.parent_arg}}}`"
        if spec.where:
            fix += f", or set `base_arg:` on {spec.where} to the ARG its FROM uses"
    resolved = "the parent's ID with another suffix" if parent_id in base else repr(base)
    return ModelError(line, f"the final stage's `FROM {written}` resolves to {resolved}, not the parent "
                                        f"{spec.parent_ref} that the pipeline passes as {spec.parent_arg}; {fix}")


def check_parent(settings: Settings, spec: ImageSpec, text: str) -> None:
    """Refuse ``text`` unless its final stage builds FROM the parent (any other image stands in by a placeholder).

    Raises:
        ConfigError: ``file:line``, what the FROM resolved to, and what to set.
    """
    from pipeline.dockerfile.analysis import EMPTY_FROM, BaseImage, ModelError, analyse
    from pipeline.dockerfile.parser import parse

    placeholder = BaseImage(PLACEHOLDER_ID)
    try:
        model = analyse(text, buildargs={**spec.buildargs, spec.parent_arg: PLACEHOLDER_ID},
                        images=lambda ref, line: placeholder, buildkit=settings.buildkit)
        problem = parent_problem(model, PLACEHOLDER_ID, spec)
    except ModelError as exc:
        if EMPTY_FROM not in str(exc):
            return  # other refusals are the dockerfile and build stages' to report, with their context
        problem = _refusal(parse(text).instructions, exc.line, "", PLACEHOLDER_ID, spec)
    if problem is not None:
        raise ConfigError(f"{locate(spec, problem.line)}: {problem}")


def check_parents(settings: Settings) -> None:
    """Check every chain layer's and every selected mission's Dockerfile (see :func:`check_parent`).

    Raises:
        ConfigError: the first stage that would not build FROM its parent.
    """
    specs = [*chain_specs(settings), *(mission_spec(settings, dep) for dep in settings.deployments)]
    memo = statmemo.for_build_dir(settings.build_dir)
    for spec in specs:
        task, fingerprint = f"parents:{spec.task}", _fingerprint(settings, spec)
        if memo.recall(task, fingerprint, lambda ref: None) == "passed":
            continue
        started_ns = time.time_ns()
        text = render(read_sources(spec.sources), buildkit=False)
        check_parent(settings, spec, text)
        memo.remember(task, fingerprint, "passed", started_ns=started_ns, followed=[str(p) for p in spec.sources],
                      links=(), images={})


# The code that decides a pass: a change to any of it (an upgrade) checks every Dockerfile again.
_CHECK_MODULES = ("parents", "render", "plan", "dockerfile/parser", "dockerfile/shell", "dockerfile/analysis")


def _fingerprint(settings: Settings, spec: ImageSpec) -> str:
    """Everything besides the Dockerfile parts that decides a pass: the spec, the builder, and the code."""
    return sha256_text(repr(("parents", spec, settings.buildkit, str(settings.deployments_dir), os.getcwd(),
                             statmemo.code_stamps(_CHECK_MODULES))))

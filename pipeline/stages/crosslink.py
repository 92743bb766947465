"""Crosslinking: hard-link duplicate files inside an image, and list an image's file tree for verification.

Both run the in-image program ``deployments/common/scripts/crosslink`` (Python 3,
standard library only) with the image's own ``python3``, passed on the command
line (``python3 -B -I -c PROGRAM``), so the program itself leaves no file
behind.  An image without python3 fails with a message saying so.

The crosslinked image is the intermediate ``NAMESPACE/squash-NAME:crosslinked``,
labelled ``pipeline.crosslink`` with the ID of the image it was made from: it
is current while that label names the image the mission tag holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.engine import Engine, ImageInfo
from pipeline.errors import CommandFailed, PipelineError
from pipeline.keys import short
from pipeline.stages.patch import (
    commit_and_tag,
    commit_config,
    run_program,
    shipped_script,
)
from pipeline.stages.results import Freshness

log = logging.getLogger(__name__)

PROGRAM = "crosslink"
LABEL_CROSSLINK = "pipeline.crosslink"
RESULT_MARK = "CROSSLINK-RESULT "
_NEEDS_PYTHON = " (crosslink and squash verification run the image's python3; the image needs one on its PATH)"


@dataclass(frozen=True)
class CrosslinkResult:
    deployment: str
    ref: str  # NAMESPACE/squash-NAME:crosslinked
    image_id: str
    source_id: str
    files_linked: int
    bytes_saved: int
    seconds: float
    made: bool  # False: the tagged intermediate was current

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "source": self.source_id, "files_linked": self.files_linked,
                "bytes_saved": self.bytes_saved, "seconds": round(self.seconds, 3), "made": self.made}


def squash_repo(settings: Settings, name: str) -> str:
    """NAMESPACE/squash-NAME: the repository of a deployment's squash intermediates."""
    return f"{settings.namespace}/squash-{name}"


def crosslinked_ref(settings: Settings, name: str) -> str:
    return f"{squash_repo(settings, name)}:crosslinked"


def program_text(settings: Settings) -> str:
    """The crosslink program's source.

    Raises:
        PipelineError: it cannot be read.
    """
    path = shipped_script(settings, PROGRAM)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"cannot read the crosslink program {path}: {exc.strerror}; restore it from git") from None


def python_argv(settings: Settings, *args: str) -> list[str]:
    return ["python3", "-B", "-I", "-c", program_text(settings), *args]


def crosslink_freshness(settings: Settings, engine: Engine, source: ImageInfo, name: str) -> Freshness:
    """Current while NAMESPACE/squash-NAME:crosslinked was made from ``source``."""
    ref = crosslinked_ref(settings, name)
    have = engine.image(ref)
    if have is None:
        return Freshness(False, f"image {ref} is missing")
    made_from = have.labels.get(LABEL_CROSSLINK, "")
    if made_from != source.id:
        return Freshness(False, f"{ref} was made from {short(made_from)}, the mission image is now {short(source.id)}")
    return Freshness(True, f"{ref} ({short(have.id)}) is current for {short(source.id)}")


def crosslink_image(settings: Settings, engine: Engine, name: str, source: ImageInfo,
                    paths: Sequence[str] = (), *, dry_run: bool = False) -> CrosslinkResult:
    """Hard-link duplicates under ``paths`` (default: the program's list) in a container from ``source``.

    The result is committed with the source's configuration and tagged
    NAMESPACE/squash-NAME:crosslinked, unless that image is already current.

    Raises:
        PipelineError: the image has no python3, or the engine failed.
        CommandFailed: the program failed (its output's tail in the message).
    """
    started = time.monotonic()
    ref = crosslinked_ref(settings, name)
    fresh = crosslink_freshness(settings, engine, source, name)
    if fresh.current and not dry_run:
        have = engine.require(ref, "it vanished while checking")
        log.info("crosslink:%s: %s", name, fresh.reason)
        return CrosslinkResult(name, ref, have.id, source.id, 0, 0, 0.0, False)
    args = ["link", *(["--dry-run"] if dry_run else []), *(["--paths", ",".join(paths)] if paths else [])]
    log.info("crosslink:%s: linking duplicate files in a container from %s", name, short(source.id))
    run = run_program(engine, source, python_argv(settings, *args), namespace=settings.namespace,
                      what=_NEEDS_PYTHON, network="none")
    summary = _summary(run.output)
    if run.returncode != 0 or summary is None:
        engine.remove_container(run.container)
        raise CommandFailed(f"crosslink in a container from {short(source.id)} exited with {run.returncode}; "
                            f"nothing committed; last output:\n{run.tail()}")
    if dry_run:
        engine.remove_container(run.container)
        return CrosslinkResult(name, "", "", source.id, summary["files_linked"], summary["bytes_saved"],
                               time.monotonic() - started, False)
    config = commit_config(source, {LABEL_CROSSLINK: source.id})
    image_id, _ = commit_and_tag(engine, run.container, source, config, ref, None)
    seconds = time.monotonic() - started
    log.info("crosslink:%s: %d files linked, %d bytes saved; tagged %s (%s) in %.1f s", name,
             summary["files_linked"], summary["bytes_saved"], ref, short(image_id), seconds)
    return CrosslinkResult(name, ref, image_id, source.id, summary["files_linked"], summary["bytes_saved"],
                           seconds, True)


def _summary(lines: Sequence[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        if line.startswith(RESULT_MARK):
            try:
                return dict(json.loads(line[len(RESULT_MARK):]))
            except ValueError:
                return None
    return None


# -- the file-tree listing used to verify a squash ----------------------------------------------

def tree_listing(settings: Settings, engine: Engine, image: ImageInfo) -> dict[str, str]:
    """path -> "type mode uid:gid size sha256|target" of every object in the image (made inside a container).

    Raises:
        PipelineError: the image has no python3, or the listing failed.
    """
    run = run_program(engine, image, python_argv(settings, "list"), namespace=settings.namespace, stream=False,
                      what=_NEEDS_PYTHON, network="none")
    engine.remove_container(run.container)
    if run.returncode != 0:
        raise CommandFailed(f"listing the files of {short(image.id)} exited with {run.returncode}; "
                            f"last output:\n{run.tail()}")
    entries: dict[str, str] = {}
    for line in run.output:
        path, _, rest = line.partition("\t")
        if rest:
            entries[path] = rest
    return entries


def tree_differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human lines for every path whose entry differs (missing, extra or changed), sorted by path."""
    lines = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if new is None:
            lines.append(f"{path}: missing after")
        elif old is None:
            lines.append(f"{path}: only after")
        else:
            lines.append(f"{path}: {old.replace(chr(9), ' ')} -> {new.replace(chr(9), ' ')}")
    return lines


def compare_images(settings: Settings, engine: Engine, before: ImageInfo, after: ImageInfo) -> list[str]:
    """The differences between the file trees of two images (hard-link structure ignored); [] when equal."""
    return tree_differences(tree_listing(settings, engine, before), tree_listing(settings, engine, after))

"""Why each stage last ran: build/runs/TASK.json, written when a stage reruns, read by `doit info`.

A stage's up-to-date check knows why it is stale only until it runs; once it
is current again that reason is gone from doit's view.  The reporter records
it here (when, why, the result, image and size) for every stage with an
up-to-date check, so `doit info TASK` can still say
``last run 2026-12-01 06:31:02 UTC: rebuilt because file app.txt changed``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline import records

IMAGE_PREFIXES = ("chain:", "build:")
# Where the records go: doit runs in the project folder, and the configuration puts build/ there too.
BUILD_DIR = Path("build")
# True while a run executes tasks (set by the reporter, which `list` and `info` never initialise):
# the up-to-date checks then skip what only `doit info` needs (the upstream walk, the last run).
running = False
# The line the reporter printed when each task started (task -> text), so the task's own log has it too.
announced: dict[str, str] = {}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def is_image_stage(task: str) -> bool:
    """root, chain:NAME and build:NAME: the stages that (re)build an image from a Dockerfile."""
    return task == "root" or task.startswith(IMAGE_PREFIXES)


def verb(task: str) -> str:
    """What a stage does when it reruns: "rebuilding" an image stage, "rerunning" any other."""
    return "rebuilding" if is_image_stage(task) else "rerunning"


def join_reasons(reasons: Sequence[str], limit: int = 3) -> str:
    """Up to ``limit`` reasons, then how many more: ``a; b; c; and 2 more``."""
    shown = "; ".join(reasons[:limit])
    more = len(reasons) - limit
    return f"{shown}; and {more} more" if more > 0 else shown


def utc(epoch: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(epoch))


@dataclass(frozen=True)
class RunRecord:
    """One stage's last run: when it started, why it ran and how it ended."""

    task: str
    result: str  # built | pulled | ran | FAILED (as in the summary table)
    reason: str  # the plain-words reasons, as printed on the stage's first line
    started: str  # UTC, TIME_FORMAT
    seconds: float | None = None
    image: str | None = None
    size: int | None = None

    def describe(self) -> str:
        """``last run 2026-12-01 06:31:02 UTC: rebuilt because file app.txt changed``."""
        done = {"built": "rebuilt", "pulled": "pulled from the stage cache", "FAILED": "FAILED"}.get(
            self.result, "reran")
        because = f" because {self.reason}" if self.reason else ""
        if self.result == "FAILED":
            return f"last run {self.started}: FAILED while {verb(self.task)}{because}"
        return f"last run {self.started}: {done}{because}"


def _path(build_dir: Path, task: str) -> Path:
    return build_dir / "runs" / f"{task.replace(':', '-')}.json"


def save(build_dir: Path, record: RunRecord) -> None:
    """Write the stage's run record (atomically, like every record under build/)."""
    records.save(_path(build_dir, record.task), asdict(record))


def load(build_dir: Path, task: str) -> RunRecord | None:
    """The stage's last run record; None when it never ran here or the record is unreadable."""
    data = records.load(_path(build_dir, task))
    if data is None or data.get("task") != task:
        return None
    try:
        return RunRecord(**{k: data.get(k) for k in RunRecord.__dataclass_fields__})
    except TypeError:
        return None


def why(task: Any) -> list[str] | None:
    """Why doit is running ``task`` now, from the up-to-date items that state it.

    Those are the pipeline's checks (pipeline/tasks/checks.py), which keep
    ``stale_reasons``.  None: the task has no such check (e.g. a view that
    always runs); an empty list: every check found it current (forced: ``doit -a``).
    """
    found = [utd for utd, _a, _k in getattr(task, "uptodate", ()) if hasattr(utd, "stale_reasons")]
    if not found:
        return None
    return [reason for utd in found for reason in (utd.stale_reasons or ())]

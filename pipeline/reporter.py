"""doit console reporter: the run lock, SIGTERM as Ctrl-C, compact failures and a summary table."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from doit.exceptions import InvalidTask, TaskError, TaskFailed
from doit.reporter import ConsoleReporter

from pipeline import interrupt, lock
from pipeline.errors import LockTimeout
from pipeline.units import human_size

# Tasks that only look at images or run long interactive containers: they must not hold the
# run lock (a developer's `doit sh:demo` would otherwise block every other run in the checkout).
# secrets_edit is not among them: a second edit of the same checkout must wait, or one edit is lost.
LOCK_FREE = frozenset(
    {"exec", "sh", "root_sh", "dev", "run_lab", "cp", "env_list", "env_export", "history", "graph",
     "secrets_cat"}
)
# Tasks whose stdout is data (`doit secrets_cat:demo > file`): no task lines, no summary around it.
QUIET = frozenset({"secrets_cat", "env_export"})


@dataclass
class _Row:
    name: str
    result: str
    seconds: float | None = None
    task: Any = None  # read its values at the end: doit sets them after skip_uptodate

    @property
    def values(self) -> dict[str, Any]:
        return dict(getattr(self.task, "values", None) or {})


class PipelineReporter(ConsoleReporter):
    """doit's console conventions (`.  task` ran, `-- task` up to date) plus the pipeline's needs."""

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self._rows: dict[str, _Row] = {}
        self._started: dict[str, float] = {}
        self._running: dict[str, Any] = {}  # started, not finished: what an interrupt stopped

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        # Runs only for commands that execute tasks (not list or info), before any state is read.
        basenames = {name.split(":", 1)[0] for name in selected_tasks or ()}
        self._quiet = bool(basenames) and basenames <= QUIET
        if not basenames or not basenames <= LOCK_FREE:
            try:
                lock.acquire()
            except LockTimeout as exc:
                raise InvalidTask(str(exc)) from None
        # A cancelled CI job sends SIGTERM: unwind like Ctrl-C so child processes are stopped
        # and doit keeps the state of the tasks that finished; complete_run then says so in one line.
        interrupt.install()
        super().initialize(tasks, selected_tasks)

    _quiet = False

    def execute_task(self, task: Any) -> None:
        self._started[task.name] = time.monotonic()
        self._running[task.name] = task
        if not self._quiet:
            super().execute_task(task)

    def add_success(self, task: Any) -> None:
        self._record(task, "ran")
        super().add_success(task)

    def skip_uptodate(self, task: Any) -> None:
        self._record(task, "up to date")
        super().skip_uptodate(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        self._record(task, "FAILED")
        if isinstance(fail, (TaskFailed, TaskError)) and fail.report and not fail.traceback:
            # A known error: its message names the task and what to do; no traceback.
            self.write(f"ERROR: {fail.message}\n")
            return
        super().add_failure(task, fail)

    def _record(self, task: Any, result: str) -> None:
        self._running.pop(task.name, None)
        if not task.actions or task.name.startswith("_"):
            return
        started = self._started.get(task.name)
        seconds = time.monotonic() - started if started is not None else None
        self._rows[task.name] = _Row(task.name, result, seconds, task)

    def complete_run(self) -> None:
        super().complete_run()
        if self._rows and not self._quiet:
            self.write(summary_table(list(self._rows.values())))
            cache = sys.modules.get("pipeline.cache")  # loaded only when a stage used the cache
            for line in cache.skipped() if cache is not None else ():
                self.write(line + "\n")
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            # Called from doit's `finally` while the KeyboardInterrupt unwinds (the state is saved by
            # then): one line instead of its traceback, and the shell's exit code for the signal.
            # (A stage that ends on Ctrl-C by design, like run_lab, has caught it: nothing unwinds.)
            running = [name for name, task in self._running.items() if task.actions and not name.startswith("_")]
            self.write(interrupt.line(running) + "\n")
            self.outstream.flush()
            raise SystemExit(interrupt.exit_code())


def summary_table(rows: list[_Row]) -> str:
    """One line per stage of the run: result, duration and, for image stages, the size and its change."""
    width = max(len("stage"), *(len(r.name) for r in rows))
    lines = ["", f"{'stage':<{width}}  {'result':<10}  {'time':>8}  image size"]
    for row in rows:
        seconds = f"{row.seconds:.1f} s" if row.seconds is not None else "-"
        lines.append(f"{row.name:<{width}}  {_result(row):<10}  {seconds:>8}  {_size(row)}".rstrip())
    failed = sum(r.result == "FAILED" for r in rows)
    ran = sum(r.result == "ran" for r in rows)
    lines.append(f"{len(rows)} stages: {ran} ran, {len(rows) - ran - failed} up to date, {failed} failed")
    return "\n".join(lines) + "\n"


def _result(row: _Row) -> str:
    """For image stages that ran: "built", or "pulled" from the stage cache."""
    if row.result == "ran":
        return {"built": "built", "cache": "pulled"}.get(str(row.values.get("source")), "ran")
    return row.result


def _size(row: _Row) -> str:
    values = row.values
    size = values.get("size")
    if not isinstance(size, int) or not size:
        return ""
    text = human_size(size)
    previous = values.get("previous_size")
    if row.result == "ran" and values.get("built") and isinstance(previous, int) and previous:
        delta = size - previous
        text += f" ({'+' if delta >= 0 else '-'}{human_size(abs(delta))})"
    elif row.result == "ran" and values.get("built"):
        text += " (new)"
    return text

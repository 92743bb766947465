"""doit console reporter: the run lock, SIGTERM as Ctrl-C, compact failures, why each stage reruns, a summary table.

When a stage with an up-to-date check starts, its first line says why
(``build:fx1: rebuilding: file app.txt changed``); when it ends, that reason is
recorded in build/runs/ (runlog.py); the run ends with the summary table, which
is also written to build/reports/last-run.json (and GitHub's job summary).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from doit.exceptions import InvalidTask, TaskError, TaskFailed
from doit.reporter import ConsoleReporter

from pipeline import engine_probe, interrupt, lock, quick_exit, runlog, runreport
from pipeline.errors import LockTimeout
from pipeline.tasks import table
from pipeline.units import human_size

# From the stage table (``lock=False`` / ``quiet=True`` rows): views and interactive shells must
# not hold the run lock (a developer's `doit sh:demo` would otherwise block every other run in the
# checkout); a quiet task's stdout is data (`doit secrets_cat:demo > file`).
LOCK_FREE = table.lock_free()
QUIET = table.quiet()
quick_exit.install()


@dataclass
class _Row:
    name: str
    result: str
    seconds: float | None = None
    task: Any = None  # read its values at the end: doit sets them after skip_uptodate
    reasons: list[str] | None = None  # why it ran (None: it did not run, or has no check)
    started: float | None = None  # epoch seconds, when it started

    @property
    def values(self) -> dict[str, Any]:
        return dict(getattr(self.task, "values", None) or {})

    @property
    def reason(self) -> str:
        """All the reasons it ran, or (for a current stage) the state its check found."""
        if self.reasons is not None:
            return "; ".join(self.reasons)
        return str((getattr(self.task, "meta", None) or {}).get("state", ""))


class PipelineReporter(ConsoleReporter):
    """doit's console conventions (`.  task` ran, `-- task` up to date) plus the pipeline's needs."""

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self._rows: dict[str, _Row] = {}
        self._started: dict[str, float] = {}
        self._wall: dict[str, float] = {}
        self._why: dict[str, list[str]] = {}
        self._run_started = time.time()
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
            # Only a run that holds the lock replaces the run report: a view (`doit sh:demo`,
            # `doit graph`) beside a CI build must not overwrite the build's record.
            self._report = True
        # A cancelled CI job sends SIGTERM: unwind like Ctrl-C so child processes are stopped
        # and doit keeps the state of the tasks that finished; complete_run then says so in one line.
        interrupt.install()
        runlog.running = True
        self._run_started = time.time()
        super().initialize(tasks, selected_tasks)

    _quiet = False
    _report = False

    def execute_task(self, task: Any) -> None:
        if task.actions:
            engine_probe.invalidate()  # the checks' image snapshot: a running task may change images
        self._started[task.name] = time.monotonic()
        self._wall[task.name] = time.time()
        reasons = runlog.why(task)
        if reasons is not None:
            # doit runs a task whose checks all found it current only when forced
            self._why[task.name] = reasons or ["forced (doit -a / --always-execute)"]
        self._running[task.name] = task
        if not self._quiet:
            super().execute_task(task)
            if reasons is not None and task.actions:
                # The stage's first line: why it runs, in the words `doit info` uses.
                text = f"{task.name}: {runlog.verb(task.name)}: {runlog.join_reasons(self._why[task.name])}"
                self.write(text + "\n")
                runlog.announced[task.name] = text

    def add_success(self, task: Any) -> None:
        if task.actions:
            engine_probe.invalidate()
        self._record(task, "ran")
        super().add_success(task)

    def skip_uptodate(self, task: Any) -> None:
        self._record(task, "up to date")
        super().skip_uptodate(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        engine_probe.invalidate()
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
        ran = started is not None and result != "up to date"
        reasons = self._why.get(task.name) if ran else None
        row = _Row(task.name, result, seconds, task, reasons, self._wall.get(task.name))
        self._rows[task.name] = row
        if reasons is not None and row.started is not None:
            # When and why, for `doit info` once the stage is current again.
            values = row.values
            record = runlog.RunRecord(task.name, _result(row), "; ".join(reasons), runlog.utc(row.started), seconds,
                                      _str_or_none(values.get("image")), _int_or_none(values.get("size")))
            runlog.save(runlog.BUILD_DIR, record)

    def complete_run(self) -> None:
        super().complete_run()
        interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        if self._rows:
            rows = list(self._rows.values())
            if not self._quiet:
                self.write(summary_table(rows))
                cache = sys.modules.get("pipeline.cache")  # loaded only when a stage used the cache
                for line in cache.skipped() if cache is not None else ():
                    self.write(line + "\n")
            if self._report:
                stage_rows = [_stage_row(r) for r in rows]
                started, finished = runlog.utc(self._run_started), runlog.utc(time.time())
                runreport.write_json(runlog.BUILD_DIR, stage_rows, started=started, finished=finished,
                                     totals=_totals(rows))
                runreport.append_step_summary(stage_rows, _totals(rows))
        if interrupted:
            # Called from doit's `finally` while the KeyboardInterrupt unwinds (the state is saved by
            # then): one line instead of its traceback, and the shell's exit code for the signal.
            # (A stage that ends on Ctrl-C by design, like run_lab, has caught it: nothing unwinds.)
            running = [name for name, task in self._running.items() if task.actions and not name.startswith("_")]
            self.write(interrupt.line(running) + "\n")
            self.outstream.flush()
            raise SystemExit(interrupt.exit_code())


def summary_table(rows: list[_Row]) -> str:
    """One line per stage of the run: result, duration, for image stages the size and its change, and why it ran."""
    width = max(len("stage"), *(len(r.name) for r in rows))
    sizes = [_size(r) for r in rows]
    size_width = max(len("image size"), *(len(s) for s in sizes))
    lines = ["", f"{'stage':<{width}}  {'result':<10}  {'time':>8}  {'image size':<{size_width}}  why"]
    for row, size in zip(rows, sizes, strict=True):
        seconds = f"{row.seconds:.1f} s" if row.seconds is not None else "-"
        lines.append(f"{row.name:<{width}}  {_result(row):<10}  {seconds:>8}  {size:<{size_width}}  {_short_why(row)}".rstrip())
    lines.append(_totals(rows))
    return "\n".join(lines) + "\n"


def _totals(rows: list[_Row]) -> str:
    failed = sum(r.result == "FAILED" for r in rows)
    ran = sum(r.result == "ran" for r in rows)
    return f"{len(rows)} stages: {ran} ran, {len(rows) - ran - failed} up to date, {failed} failed"


WHY_WIDTH = 60


def _short_why(row: _Row) -> str:
    """The first reason, shortened, and how many more: the table's "why" column."""
    if not row.reasons:
        return ""
    first = row.reasons[0]
    if len(first) > WHY_WIDTH:
        first = first[: WHY_WIDTH - 1] + "…"
    return first + (f" (+{len(row.reasons) - 1} more)" if len(row.reasons) > 1 else "")


def _stage_row(row: _Row) -> runreport.StageRow:
    values = row.values
    return runreport.StageRow(
        stage=row.name,
        result=_result(row),
        reason=row.reason,
        why=_short_why(row),
        started=runlog.utc(row.started) if row.started is not None else None,
        seconds=round(row.seconds, 3) if row.seconds is not None else None,
        image=_str_or_none(values.get("image")),
        size=_int_or_none(values.get("size")),
        size_text=_size(row),
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


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

"""doit console reporter: takes the run lock, turns SIGTERM into Ctrl-C, prints failures compactly."""

from __future__ import annotations

import signal
from typing import Any

from doit.exceptions import InvalidTask, TaskFailed
from doit.reporter import ConsoleReporter

from pipeline import lock
from pipeline.errors import LockTimeout


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class PipelineReporter(ConsoleReporter):
    """doit's console conventions (`.  task` ran, `-- task` up to date) plus the pipeline's needs."""

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        # Runs only for commands that execute tasks (not for list or info), before any state is read.
        try:
            lock.acquire()
        except LockTimeout as exc:
            raise InvalidTask(str(exc)) from None
        # A cancelled CI job sends SIGTERM: unwind like Ctrl-C so child processes are stopped
        # and doit keeps the state of the tasks that finished.
        signal.signal(signal.SIGTERM, _interrupt)
        super().initialize(tasks, selected_tasks)

    def add_failure(self, task: Any, fail: Any) -> None:
        if isinstance(fail, TaskFailed) and fail.report:
            # A known error: its message names the task and what to do; no traceback.
            self.write(f"ERROR: {fail.message}\n")
            return
        super().add_failure(task, fail)

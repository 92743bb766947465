"""Ctrl-C and SIGTERM (a cancelled CI job): unwind like Ctrl-C, then end with one line and 130 / 143.

The signal becomes a KeyboardInterrupt in the main thread, so every ``finally``
of the running stage runs (the build is cancelled, containers are removed, no tag
moves) and doit still saves the state of the tasks that finished.  The reporter
then prints :func:`line` instead of Python's traceback and exits with
:func:`exit_code`, the shell's convention (128 + the signal number).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any

_received: signal.Signals | None = None


def _handler(signum: int, frame: Any) -> None:
    global _received
    _received = signal.Signals(signum)
    raise KeyboardInterrupt(_received.name)


def install() -> None:
    """Route SIGINT and SIGTERM through one handler (main thread only, as Python requires)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def received() -> signal.Signals | None:
    """The signal that interrupted this run, if any."""
    return _received


def line(running: Sequence[str]) -> str:
    """``interrupted (SIGTERM) during build:fx1; nothing was tagged; the next run redoes it``."""
    name = _received.name if _received is not None else "SIGINT"
    if not running:
        return f"interrupted ({name}) between stages; the stages that finished are kept; the next run does the rest"
    tasks = ", ".join(running)
    return (f"interrupted ({name}) during {tasks}; nothing was tagged; "
            f"the next run redoes {'it' if len(running) == 1 else 'them'}")


def exit_code() -> int:
    """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(_received if _received is not None else signal.SIGINT)

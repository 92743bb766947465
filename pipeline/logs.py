"""Logging set-up: live console output plus one full log file per task.

Modules log through ``logging.getLogger(__name__)`` (all under ``pipeline``).
INFO goes to the console live; DEBUG and above go to build/logs/TASK.log.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = logging.getLogger("pipeline")


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is *now*, so doit's capture and pytest's capsys both work."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_console() -> None:
    """Install the console handler once per process."""
    if not any(isinstance(h, _ConsoleHandler) for h in ROOT.handlers):
        ROOT.addHandler(_ConsoleHandler())
    ROOT.setLevel(logging.DEBUG)
    ROOT.propagate = False


def log_path(build_dir: Path, task_name: str) -> Path:
    return build_dir / "logs" / f"{task_name}.log"


@contextmanager
def task_log(build_dir: Path, task_name: str) -> Iterator[Path]:
    """Send everything logged during one task to build/logs/TASK.log (replaced each run)."""
    setup_console()
    path = log_path(build_dir, task_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    # With `doit -n N -P thread` several tasks log at once: each file takes only its own thread's records.
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ROOT.addHandler(handler)
    try:
        yield path
    finally:
        ROOT.removeHandler(handler)
        handler.close()

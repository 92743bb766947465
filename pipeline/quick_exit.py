"""Skip the interpreter's final garbage collection when this process is the ``doit`` command.

At exit, CPython runs a full collection over every object still alive: the
modules, functions and tasks of the whole run.  On the demo's no-op that was
about 13 ms of 0.13 s (measured with ``bench/noop_vs_rebuild.py``), for memory
the operating system takes back anyway.  ``gc.freeze()`` in an exit handler
moves those objects out of the collector's sight, so the final pass has nothing
to walk.  Exit handlers registered before this one still run after it (LIFO):
``logging.shutdown`` flushes and closes the log files as usual, and doit has
closed its state database before its reporter's last call.  What is skipped is
only the collection of reference cycles, which hold nothing that needs flushing
here (every file the pipeline writes is written and closed in one call).

Only for the command: a test runner or anything else that calls doit in-process
keeps its collector as it was.
"""

from __future__ import annotations

import atexit
import gc
import sys

_installed = False


def is_doit_command() -> bool:
    """True when ``__main__`` is doit's entry point (``python -m doit`` or the ``doit`` console script)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "doit.__main__":
        return True
    entry = getattr(sys.modules.get("doit.__main__"), "main", None)
    return entry is not None and getattr(main, "main", None) is entry


def install() -> None:
    """Register the exit handler once, if this process is the doit command."""
    global _installed
    if not _installed and is_doit_command():
        atexit.register(gc.freeze)
        _installed = True

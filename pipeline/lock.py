"""One pipeline run at a time per checkout: an advisory flock on .pipeline.lock.

Two `doit` runs in one checkout would otherwise build the same image twice and
lose each other's state writes.  The second run waits (saying so) and then
finds the first one's images current.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import IO

from pipeline.errors import LockTimeout

LOCK_FILE = ".pipeline.lock"
_held: IO[str] | None = None


def acquire(path: Path = Path(LOCK_FILE), timeout: float | None = None, poll: float = 0.2) -> None:
    """Take the lock for the rest of this process (released when it exits).

    Args:
        timeout: seconds to wait; default PIPELINE_LOCK_TIMEOUT or 3600; 0 fails at once.

    Raises:
        LockTimeout: another run kept the lock for longer than ``timeout``.
    """
    global _held
    if _held is not None:
        return
    if timeout is None:
        timeout = float(os.environ.get("PIPELINE_LOCK_TIMEOUT", "3600"))
    handle = path.open("a+")
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(handle)
            if time.monotonic() >= deadline:
                handle.close()
                raise LockTimeout(
                    f"another doit run in this checkout holds {path} ({holder}); "
                    "wait for it to finish or raise PIPELINE_LOCK_TIMEOUT"
                ) from None
            if not told:
                print(f"waiting for another doit run in this checkout to finish ({holder}, lock {path})", file=sys.stderr)
                told = True
            time.sleep(poll)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held = handle


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    pid = handle.read().strip()
    return f"pid {pid}" if pid else "pid unknown"

"""Atomic writes of generated files, so an interrupted run never leaves half a file."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# What open() would give a new file. mkstemp's 0600 would otherwise leak into COPYed build
# inputs (and so into input keys, which must be the same on every checkout).
GENERATED_MODE = _default_mode()


def has_generated_mode(path: Path) -> bool:
    try:
        return stat.S_IMODE(path.stat().st_mode) == GENERATED_MODE
    except OSError:
        return False


def write_bytes(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically with the usual file mode; False (and no write) when the file already holds it."""
    try:
        if path.read_bytes() == data and has_generated_mode(path):
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, GENERATED_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_text(path: Path, text: str) -> bool:
    """Write UTF-8 ``text`` atomically; False when unchanged."""
    return write_bytes(path, text.encode("utf-8"))


def file_identity(path: Path) -> dict[str, Any] | None:
    """What a stage records of a file it read or wrote: resolved path, size and mtime (None when absent)."""
    try:
        stat_ = path.stat()
    except OSError:
        return None
    return {"path": str(path.resolve()), "bytes": stat_.st_size, "mtime_ns": stat_.st_mtime_ns}


def file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes in pieces of ``size`` (for streaming it to the engine)."""
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk

"""The last inputs each image stage was built from: build/keys/TASK.json.

Kept beside .doit.db (not in it) so the reasons survive a lost or failed doit
state: doit drops a task's saved values when the task fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import records
from pipeline.keys import InputKey


def _path(build_dir: Path, task: str) -> Path:
    return build_dir / "keys" / f"{task.replace(':', '-')}.json"


def save(build_dir: Path, task: str, key: InputKey, source: str | None = None) -> None:
    """Record the inputs (and where the image came from: built | cache) of the stage's current image."""
    records.save(_path(build_dir, task), {"digest": key.digest, "parts": key.parts, "source": source})


def load_source(build_dir: Path, task: str, digest: str | None) -> str | None:
    """How the image with ``digest`` was made ("built" or "cache"), when recorded."""
    record = _load(build_dir, task)
    return record.get("source") if record and record.get("digest") == digest else None


def _load(build_dir: Path, task: str) -> dict[str, Any] | None:
    return records.load(_path(build_dir, task))


def load_parts(build_dir: Path, task: str, digest: str | None) -> dict[str, Any] | None:
    """The recorded parts of ``digest`` for ``task``; None when there is no such record."""
    data = _load(build_dir, task)
    if data is None or data.get("digest") != digest:
        return None
    parts = data.get("parts")
    return parts if isinstance(parts, dict) else None

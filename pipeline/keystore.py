"""The last inputs each image stage was built from: build/keys/TASK.json.

Kept beside .doit.db (not in it) so the reasons survive a lost or failed doit
state: doit drops a task's saved values when the task fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.files import write_text
from pipeline.keys import InputKey


def _path(build_dir: Path, task: str) -> Path:
    return build_dir / "keys" / f"{task.replace(':', '-')}.json"


def save(build_dir: Path, task: str, key: InputKey) -> None:
    write_text(_path(build_dir, task), json.dumps({"digest": key.digest, "parts": key.parts}, indent=1, sort_keys=True))


def load_parts(build_dir: Path, task: str, digest: str | None) -> dict[str, Any] | None:
    """The recorded parts of ``digest`` for ``task``; None when there is no such record."""
    try:
        data = json.loads(_path(build_dir, task).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("digest") != digest:
        return None
    parts = data.get("parts")
    return parts if isinstance(parts, dict) else None

"""Small JSON records under build/ that outlive doit's state (doit drops a failed task's values).

Used by the stages (tests, freeze, pushes, scanners) and the input keystore.
``build/tests/NAME.json`` holds the image and command of the last passing test,
``build/freeze/NAME.json`` the image and files of the last freeze.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.files import write_text


def record_path(build_dir: Path, kind: str, deployment: str) -> Path:
    return build_dir / kind / f"{deployment}.json"


def load(path: Path) -> dict[str, Any] | None:
    """The record, or None when it is missing or unreadable (an unreadable record only costs a rerun)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)

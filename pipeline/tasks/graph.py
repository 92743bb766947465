"""The graph task (placeholder: being implemented)."""

from __future__ import annotations

from typing import Any


def graph_task() -> dict[str, Any]:
    return {"actions": None, "doc": "not implemented yet"}

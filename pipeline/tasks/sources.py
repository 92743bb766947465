"""Task generators for source scanning and deployment secrets (placeholder: being implemented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _none() -> Iterator[dict[str, Any]]:
    yield from ()


sscan_tasks = secrets_clone_tasks = secrets_edit_tasks = secrets_cat_tasks = secrets_push_tasks = _none

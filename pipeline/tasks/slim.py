"""Task generators for patching and squashing (placeholder: being implemented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _none() -> Iterator[dict[str, Any]]:
    yield from ()


patch_tasks = patch_os_tasks = patch_ssl_tasks = patch_history_tasks = _none
crosslink_tasks = export_tasks = import_tasks = squash_tasks = _none

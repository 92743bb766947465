"""Task generators for the hands-on commands (placeholder: being implemented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _none() -> Iterator[dict[str, Any]]:
    yield from ()


exec_tasks = sh_tasks = root_sh_tasks = dev_tasks = run_lab_tasks = cp_tasks = env_list_tasks = env_export_tasks = _none

"""Task generators for test, freeze, manifest and history (placeholder: being implemented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def test_tasks() -> Iterator[dict[str, Any]]:
    yield from ()


def freeze_tasks() -> Iterator[dict[str, Any]]:
    yield from ()


def manifest_tasks() -> Iterator[dict[str, Any]]:
    yield from ()


def history_tasks() -> Iterator[dict[str, Any]]:
    yield from ()

"""Config paths as users typed them, and the mapping type that remembers the line of each key.

The parser (PyYAML, with duplicate keys refused) is pipeline/yamlparse.py, imported
only where a file is parsed: a no-op reads its configuration through pipeline/yamlmemo.py.
"""

from __future__ import annotations

import os
from pathlib import Path


class LineDict(dict):
    """A mapping that remembers the 1-based line of each of its keys."""

    lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        return getattr(self, "lines", {}).get(key)


_cwd: tuple[str, Path] = ("", Path())


def display(path: Path) -> str:
    """A path as users typed it: relative to the working directory when below it."""
    global _cwd
    cwd = os.getcwd()
    if _cwd[0] != cwd:
        _cwd = (cwd, Path(cwd).resolve())
    try:
        return str(path.resolve().relative_to(_cwd[1]))
    except ValueError:
        return str(path)

"""Config paths as users typed them, and YAML loading that keeps line numbers, so errors can name the line.

The parser itself (PyYAML, with duplicate keys refused) is in pipeline/yamlparse.py,
imported on first use: a no-op reads its configuration from pipeline/yamlmemo.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


def load_yaml(path: Path) -> Any:
    """Parse one YAML file (see :func:`pipeline.yamlparse.load_yaml`).

    Raises:
        ConfigError: the file is missing, unreadable or not valid YAML, or a mapping gives a key twice.
    """
    from pipeline.yamlparse import load_yaml as parse_file

    return parse_file(path)

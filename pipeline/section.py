"""Typed, strict access to one mapping of a YAML config file.

Every accessor raises :class:`ConfigError` with a message that names the file,
the line and the dotted key, and says what is expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.yamlfile import LineDict, display


class Section:
    """A mapping at ``prefix`` inside ``path``; tracks which keys were read."""

    def __init__(self, path: Path, data: Any, prefix: str = "", line: int | None = None) -> None:
        self.path = path
        self.prefix = prefix
        self._line = line
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            what = f"key '{prefix}'" if prefix else "the file"
            raise self.error(f"{what} must be a mapping, not {_kind(data)}")
        self.data: Mapping[str, Any] = data

    def _loc(self, key: str | None = None) -> str:
        line = None
        if key is not None and isinstance(self.data, LineDict):
            line = self.data.line_of(key)
        if line is None:
            line = self._line
        return f"{display(self.path)}:{line}" if line else display(self.path)

    def dotted(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(f"{self._loc(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                raise self.error(
                    f"unknown key '{self.dotted(str(key))}'; expected one of: {', '.join(allowed)}", str(key)
                )

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(f"missing key '{self.dotted(key)}'")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(f"key '{self.dotted(key)}' must be a string, not {_kind(value)}", key)
        text = str(value).strip()
        if not text:
            raise self.error(f"key '{self.dotted(key)}' must not be empty", key)
        return text

    def req(self, key: str) -> str:
        value = self.str(key, required=True)
        assert value is not None
        return value

    def bool(self, key: str, default: bool) -> bool:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if isinstance(value, bool):
            return value
        parsed = parse_bool(value)
        if parsed is None:
            raise self.error(f"key '{self.dotted(key)}' must be true or false, not {value!r}", key)
        return parsed

    def number(self, key: str, default: float, *, integer: bool = False, minimum: float = 0.0) -> float:
        """A number > ``minimum`` (or >= 0 for integers)."""
        value = self.data.get(key)
        if value is None:
            return default
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (isinstance(value, int) if integer else True)
        ok = ok and (value >= minimum if integer else value > minimum)
        if not ok:
            what = "a whole number" if integer else "a positive number"
            raise self.error(f"key '{self.dotted(key)}' must be {what}, not {value!r}", key)
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        choices = list(choices)
        value = self.str(key, default)
        assert value is not None
        if value not in choices:
            raise self.error(f"key '{self.dotted(key)}' is {value!r}; expected one of: {', '.join(choices)}", key)
        return value

    def section(self, key: str) -> Section:
        line = self.data.line_of(key) if isinstance(self.data, LineDict) else None
        return Section(self.path, self.data.get(key), self.dotted(key), line)

    def string_map(self, key: str) -> dict[str, str]:
        sub = self.section(key)
        out: dict[str, str] = {}
        for name, value in sub.data.items():
            if isinstance(value, (Mapping, list)) or value is None:
                raise sub.error(f"key '{sub.dotted(str(name))}' must be a scalar value", str(name))
            out[str(name)] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def items(self, key: str) -> list[Section]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"key '{self.dotted(key)}' must be a list, not {_kind(value)}", key)
        line = self.data.line_of(key) if isinstance(self.data, LineDict) else None
        return [Section(self.path, item, f"{self.dotted(key)}[{i}]", line) for i, item in enumerate(value)]

    def file(self, key: str, base: Path, *, required: bool = True, default: str | None = None) -> Path | None:
        """A path relative to ``base`` that must exist as a file."""
        value = self.str(key, default, required=required and default is None)
        if value is None:
            return None
        path = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
        if not path.is_file():
            raise self.error(f"key '{self.dotted(key)}': file {display(path)} does not exist", key)
        return path

    def directory(self, key: str, base: Path) -> Path:
        value = self.req(key)
        path = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
        if not path.is_dir():
            raise self.error(f"key '{self.dotted(key)}': directory {display(path)} does not exist", key)
        return path


def parse_bool(value: Any) -> bool | None:
    """``1/0, true/false, yes/no, on/off`` (any case) to a bool; None when not one of them."""
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    return None


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return f"{type(value).__name__} {value!r}"

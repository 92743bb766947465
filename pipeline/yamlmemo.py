"""Parsed configuration YAML remembered by stat data, so a no-op does not import PyYAML.

Importing PyYAML and parsing pipeline.yaml and each deployment.yaml cost a
no-op about 9 ms of its 0.1 s.  The parsed documents (with the line of every
key, which config errors name) are kept in build/cache/config-yaml.json and
used again only under the rule pipeline/hashing.py applies to file hashes: the
file's (size, mtime_ns, ctime_ns, inode, mode) match exactly, and the file was
more than ``RACY_NS`` old when it was parsed.  Anything else parses the file.
A document holding a value JSON cannot carry exactly (a set, binary data) is
never kept.  Validation always runs on the data, so every existence check and
every error message is as fresh as without the memo; only the parse is saved.
The file is advisory: losing it costs one parse per file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

from pipeline import statmemo
from pipeline.files import write_text
from pipeline.hashing import RACY_NS
from pipeline.yamlfile import LineDict

log = logging.getLogger(__name__)

FILE = "config-yaml.json"
# The parser's own code is part of every entry: a change to how YAML is read parses every file again.
_PARSER = (Path(__file__).resolve().parent / "yamlparse.py", Path(__file__).resolve().parent / "yamlfile.py")


def parse_file(path: Path) -> Any:
    """:func:`pipeline.yamlparse.load_yaml`, imported (with PyYAML) only when a file must be parsed."""
    from pipeline.yamlparse import load_yaml

    return load_yaml(path)


class _NotKept(Exception):
    pass


def _encode(value: Any) -> Any:
    """A JSON form that gives back exactly ``value``; mappings, dates and datetimes are tagged objects."""
    if isinstance(value, dict):
        lines = getattr(value, "lines", None) if isinstance(value, LineDict) else None
        return {"map": [[_encode(k), _encode(v)] for k, v in value.items()], "lines": lines}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and value == value:  # NaN never equals itself: not kept
        return value
    raise _NotKept(type(value).__name__)


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "map" in value:
            result = LineDict((_decode(k), _decode(v)) for k, v in value["map"])
            if value.get("lines") is not None:
                result.lines = dict(value["lines"])
            return result
        if "datetime" in value:
            return dt.datetime.fromisoformat(value["datetime"])
        return dt.date.fromisoformat(value["date"])
    return value


class YamlMemo:
    """load(path): the parsed YAML of ``path``, from the memo when the file is unchanged."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._parser = [statmemo.stamp(str(p), True) for p in _PARSER]
        self._entries: dict[str, Any] = {}
        self._changed = False
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("parser") == self._parser and isinstance(data.get("files"),
                                                                                                 dict):
                    self._entries = data["files"]
            except (OSError, ValueError):
                pass

    def load(self, path: Path) -> Any:
        """Like :func:`pipeline.yamlparse.load_yaml` (and raising what it raises)."""
        name = str(path)
        started_ns = time.time_ns()
        try:
            stamp = statmemo.stamp(name, True)
        except OSError:
            stamp = None
        entry = self._entries.get(name)
        if stamp is not None and isinstance(entry, dict) and entry.get("stat") == stamp:
            try:
                return _decode(entry["data"])
            except (KeyError, TypeError, ValueError):
                pass
        data = parse_file(path)
        if stamp is None or max(stamp[1], stamp[2]) > started_ns - RACY_NS:
            return data  # too recent to trust its stat data next time (see pipeline/hashing.py)
        try:
            self._entries[name] = {"stat": stamp, "data": _encode(data)}
            self._changed = True
        except _NotKept as exc:
            log.debug("%s: not remembered (holds a %s)", path, exc)
        return data

    def save(self) -> None:
        """Write the memo if a file was parsed (advisory: an unwritable build dir costs nothing else)."""
        if self.path is None or not self._changed:
            return
        try:
            write_text(self.path, json.dumps({"parser": self._parser, "files": self._entries}))
        except OSError as exc:
            log.debug("cannot save %s: %s", self.path, exc)
        self._changed = False

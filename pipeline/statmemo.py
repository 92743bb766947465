"""Stat data recorded with each image stage's key, so a no-op decides "inputs unchanged" without parsing.

When a stage's key is computed (pipeline/stages/images.py plan_build), the
stat data of everything that key was computed from is recorded beside it in
build/cache/input-stats.json: the Dockerfile parts, the context's
``.dockerignore`` and root, every context entry (files, symlinks, and the
directories above and inside the copied trees, whose mtime changes when an
entry is added, removed or renamed), every directory listed for a wildcard, and
the IDs of the images it read (the parent first).  A later check recalls the
key only when all of it matches exactly:

- every path's (size, mtime_ns, ctime_ns, inode, mode), and its absence where it was absent;
- every image reference still names the same image ID;
- the stage's fingerprint: its ImageSpec, the builder settings, the working
  directory and the key model's own source files (so an upgrade of the model
  recomputes every key).

Like pipeline/hashing.py, a record is kept only when every path's mtime and
ctime were more than ``RACY_NS`` older than the moment the key computation
started: a file changed within the same clock tick as its stat could keep its
stamp.  Restoring an mtime changes ctime, so it is caught.  Anything else — a
missing record, an unreadable path, a changed stamp — means "compute the key"
(the memo fails closed).  The file is advisory: losing it costs one computation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.files import write_text
from pipeline.hashing import RACY_NS

log = logging.getLogger(__name__)

FILE = "input-stats.json"
_VERSION = 1


_PACKAGE = Path(__file__).resolve().parent
_code_stamps: dict[tuple[str, ...], list[list[int] | None]] = {}


def code_stamps(modules: tuple[str, ...]) -> list[list[int] | None]:
    """The stamps of the pipeline's own source files ``modules`` (``"dockerfile/parser"``), once per process.

    Part of a fingerprint: an upgrade of the code that decides a record makes the record unusable.
    Stamped by path, so checking them imports none of those modules.
    """
    stamps = _code_stamps.get(modules)
    if stamps is None:
        stamps = _code_stamps[modules] = [stamp(str(_PACKAGE / f"{m}.py"), True) for m in modules]
    return stamps


def stamp(path: str, follow: bool) -> list[int] | None:
    """(size, mtime_ns, ctime_ns, inode, mode) of ``path``; None when it does not exist.

    Raises:
        OSError: the path exists but cannot be examined.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]


class StatMemo:
    """The recorded (stat data -> key digest) of each stage, loaded once per process."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = {}
        if path is not None:
            self._entries = _read(path)

    def recall(self, task: str, fingerprint: str, image_id: Callable[[str], str | None]) -> str | None:
        """The key digest recorded for ``task`` if nothing it was computed from changed, else None.

        ``image_id(ref)`` gives the ID the reference names now (None: absent).
        """
        with self._lock:
            entry = self._entries.get(task)
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        try:
            for follow, key in ((True, "stat"), (False, "lstat")):
                for path, recorded in entry[key].items():
                    if stamp(path, follow) != recorded:
                        return None
            for ref, recorded_id in entry["images"].items():
                if image_id(ref) != recorded_id:
                    return None
        except (OSError, KeyError, AttributeError, TypeError):
            return None
        digest = entry.get("digest")
        return digest if isinstance(digest, str) else None

    def remember(self, task: str, fingerprint: str, digest: str, *, started_ns: int, followed: Iterable[str],
                 links: Iterable[str], images: Mapping[str, str]) -> None:
        """Record what ``digest`` was computed from; nothing is kept when a path is too recent to trust.

        ``followed`` are stat'ed through symlinks (Dockerfile parts, .dockerignore, the context
        root), ``links`` are not (context entries, which the build sends as they are).
        """
        entry: dict[str, Any] | None
        try:
            stat = {p: stamp(p, True) for p in followed}
            lstat = {p: stamp(p, False) for p in links}
        except OSError:
            entry = None
        else:
            newest = max((max(s[1], s[2]) for s in (*stat.values(), *lstat.values()) if s is not None), default=0)
            racy = newest > started_ns - RACY_NS
            entry = None if racy else {"fingerprint": fingerprint, "digest": digest, "stat": stat, "lstat": lstat,
                                       "images": dict(images)}
        with self._lock:
            if entry is None and task not in self._entries:
                return
            if entry is not None and self._entries.get(task) == entry:
                return
            if entry is None:
                self._entries.pop(task, None)
            else:
                self._entries[task] = entry
        self._save(task, entry)

    def _save(self, task: str, entry: dict[str, Any] | None) -> None:
        """Merge this one change into the file (other processes may have written theirs), atomically."""
        if self.path is None:
            return
        with self._lock:
            current = _read(self.path)
            if entry is None:
                current.pop(task, None)
            else:
                current[task] = entry
            text = json.dumps({"version": _VERSION, "stages": current})
            try:
                write_text(self.path, text)
            except OSError as exc:  # an optimisation only
                log.debug("cannot save %s: %s", self.path, exc)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("stages"), dict):
        return {}
    return data["stages"]


_memos: dict[tuple[int, Path], StatMemo] = {}
_memos_lock = threading.Lock()


def for_build_dir(build_dir: Path) -> StatMemo:
    """The process's memo for ``build_dir`` (a forked worker loads its own)."""
    key = (os.getpid(), build_dir)
    with _memos_lock:
        memo = _memos.get(key)
        if memo is None:
            memo = _memos[key] = StatMemo(build_dir / "cache" / FILE)
        return memo

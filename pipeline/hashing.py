"""Content hashes of files, cached by stat data so a no-op run reads nothing twice.

A cached hash is trusted only when size, mtime_ns, ctime_ns and inode all match
the record, and the file's mtime was more than ``RACY_NS`` older than the moment
it was hashed (git's "racy clean" rule: a file rewritten within the same clock
tick as the hash could keep its stamp with new bytes).  Restoring an mtime with
``touch -d``/``os.utime`` changes ctime, so it is caught too.  One hasher may
be used from several threads (``doit -n N -P thread``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from pipeline.files import write_text

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
RACY_NS = 2_000_000_000


def stamp_of(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class FileHasher:
    """sha256 of file contents with a small on-disk cache keyed by stat data.

    The cache is advisory: a corrupt or missing cache file only costs a re-hash.
    """

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, list] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if cache_file is not None:
            try:
                data = json.loads(cache_file.read_text())
                if isinstance(data, dict):
                    self._cache = data
            except (OSError, ValueError):
                pass

    def digest(self, path: Path) -> str:
        """``sha256:HEX`` of the file's bytes (following a symlink).

        Raises:
            OSError: the file cannot be read.
        """
        st = path.stat()
        stamp = stamp_of(st)
        key = str(path)
        with self._lock:
            cached = self._cache.get(key)
        if (
            cached is not None
            and len(cached) == 6
            and cached[:4] == stamp
            and cached[5] - st.st_mtime_ns > RACY_NS
        ):
            return cached[4]
        hashed_at = time.time_ns()
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        value = "sha256:" + h.hexdigest()
        with self._lock:
            self._cache[key] = [*stamp, value, hashed_at]
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache atomically (safe with concurrent runs: last writer wins)."""
        if not self._dirty or self.cache_file is None:
            return
        with self._lock:
            text = json.dumps(self._cache)
            self._dirty = False
        try:
            write_text(self.cache_file, text)
        except OSError as exc:  # the cache is an optimisation only
            log.debug("cannot save hash cache %s: %s", self.cache_file, exc)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))

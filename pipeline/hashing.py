"""Content hashes of files, cached by (size, mtime, inode) so a no-op run reads nothing twice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class FileHasher:
    """sha256 of file contents with a small on-disk cache keyed by stat data.

    The cache is advisory: a corrupt or missing cache file only costs a re-hash.
    """

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, list] = {}
        self._dirty = False
        if cache_file is not None:
            try:
                data = json.loads(cache_file.read_text())
                if isinstance(data, dict):
                    self._cache = data
            except (OSError, ValueError):
                pass

    def digest(self, path: Path) -> str:
        """``sha256:HEX`` of the file's bytes.

        Raises:
            OSError: the file cannot be read.
        """
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(path)
        cached = self._cache.get(key)
        if cached is not None and cached[:3] == stamp:
            return cached[3]
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        value = "sha256:" + h.hexdigest()
        self._cache[key] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache atomically (safe with concurrent runs: last writer wins)."""
        if not self._dirty or self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_file.parent, prefix=".hashes.")
            with os.fdopen(fd, "w") as fh:
                json.dump(self._cache, fh)
            os.replace(tmp, self.cache_file)
            self._dirty = False
        except OSError as exc:  # the cache is an optimisation only
            log.debug("cannot save hash cache %s: %s", self.cache_file, exc)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))

"""Write the build context: exactly the keyed entries plus the rendered Dockerfile, deterministically.

Every entry gets owner 0:0, the fixed mtime ``MTIME`` and its reduced mode, so
the same inputs give the same context on every runner.  Each file's bytes are
hashed while they are sent; a file that changed since its key was computed
stops the build (:class:`ContextChanged`), so an image never holds bytes its
key does not name.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.buildctx import DOCKERFILE_NAME
from pipeline.buildctx.collect import Entry
from pipeline.errors import BuildFailed

# 2000-01-01T00:00:00Z: fixed, and after 1980 so that zip-based tools (wheels) accept copied files.
MTIME = 946684800
_CHUNK = 1 << 20


class ContextChanged(BuildFailed):
    """A context file changed between computing the key and sending it."""


@dataclass(frozen=True)
class BuildContext:
    """The context of one build: ``entries`` (relative path -> entry) read from ``root``."""

    root: Path
    entries: Mapping[str, Entry]
    dockerfile: str

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries.values() if e.kind == "file")

    def tar(self) -> Iterator[bytes]:
        """The context as an uncompressed tar stream, for the Engine API.

        The Dockerfile and a ``.dockerignore`` naming it are added: the classic
        builder drops both before any COPY, so ``COPY .`` sees only the entries.

        Raises:
            ContextChanged: a file's bytes no longer match its key.
        """
        ignore = f"{DOCKERFILE_NAME}\n.dockerignore\n".encode()
        yield _header(DOCKERFILE_NAME, tarfile.REGTYPE, 0o644, size=len(self.dockerfile.encode()))
        yield _padded(self.dockerfile.encode())
        yield _header(".dockerignore", tarfile.REGTYPE, 0o644, size=len(ignore))
        yield _padded(ignore)
        for rel, entry in self.entries.items():
            if entry.kind == "dir":
                yield _header(rel, tarfile.DIRTYPE, entry.mode)
            elif entry.kind == "link":
                yield _header(rel, tarfile.SYMTYPE, 0o777, linkname=entry.target)
            else:
                yield from self._file(rel, entry)
        yield b"\0" * (tarfile.BLOCKSIZE * 2)

    def _file(self, rel: str, entry: Entry) -> Iterator[bytes]:
        path = self.root / rel
        h = hashlib.sha256()
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            yield _header(rel, tarfile.REGTYPE, entry.mode, size=size)
            left = size
            while left:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
                yield chunk
            if left or fh.read(1) or "sha256:" + h.hexdigest() != entry.digest:
                raise ContextChanged(f"{path} changed while the build was starting; run again")
            if size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)

    def materialize(self, dest: Path) -> Path:
        """Write the entries into ``dest/context`` and the Dockerfile beside it (for a docker CLI build).

        Returns the Dockerfile's path.

        Raises:
            ContextChanged: a file's bytes no longer match its key.
        """
        top = dest / "context"
        top.mkdir(parents=True)
        for rel, entry in self.entries.items():
            target = top / rel
            if entry.kind == "dir":
                target.mkdir(exist_ok=True)
            elif entry.kind == "link":
                os.symlink(entry.target, target)
            else:
                h = hashlib.sha256()
                with (self.root / rel).open("rb") as src, target.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                if "sha256:" + h.hexdigest() != entry.digest:
                    raise ContextChanged(f"{self.root / rel} changed while the build was starting; run again")
        # Modes and times last, deepest first, so creating children does not touch a parent's mtime.
        for rel, entry in sorted(self.entries.items(), reverse=True):
            target = top / rel
            if entry.kind != "link":
                os.chmod(target, entry.mode)
            os.utime(target, (MTIME, MTIME), follow_symlinks=False)
        os.chmod(top, 0o755)
        os.utime(top, (MTIME, MTIME))
        dockerfile = dest / "Dockerfile"
        dockerfile.write_text(self.dockerfile, encoding="utf-8")
        return dockerfile

    def size(self) -> int:
        """Bytes of file content the context carries."""
        total = 0
        for rel, entry in self.entries.items():
            if entry.kind == "file":
                try:
                    total += (self.root / rel).stat().st_size
                except OSError:
                    pass
        return total


def _header(name: str, kind: bytes, mode: int, *, size: int = 0, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name + "/" if kind == tarfile.DIRTYPE else name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.linkname = linkname
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _padded(data: bytes) -> bytes:
    pad = (-len(data)) % tarfile.BLOCKSIZE
    return data + b"\0" * pad

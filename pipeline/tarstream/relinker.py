"""The one pass: which files may be linked (Roots), the Relinker, and file digests."""

from __future__ import annotations

import fnmatch
import hashlib
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pipeline.tarstream.tar_format import (
    ZERO_BLOCK,
    Entry,
    StreamError,
    _padded,
    _Reader,
    link_header,
    parse_headers,
    read_entry,
)

SPOOL_BOUND = 64 << 20
OUT_CHUNK = 1 << 20


class Roots:
    """Directories (shell globs allowed, one path component per ``*``) whose files may be linked."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [tuple(p for p in pattern.strip("/").split("/") if p) for pattern in patterns if pattern]
        self._dirs: dict[str, bool] = {}

    def may_hold_below(self, directory: str) -> bool:
        """Whether ``directory`` (``/usr/lib``) or a directory below it may hold linkable files."""
        parts = tuple(p for p in directory.split("/") if p)
        return any(all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pat, strict=False)) for pat in self.patterns)

    def holds(self, path: str) -> bool:
        directory = path.rsplit("/", 1)[0]
        known = self._dirs.get(directory)
        if known is None:
            parts = tuple(p for p in directory.split("/") if p)
            known = any(len(parts) >= len(pat) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pat, strict=False))
                        for pat in self.patterns)
            self._dirs[directory] = known
        return known


# -- the one pass --------------------------------------------------------------------------------

def _meta_key(digest: bytes, entry: Entry) -> bytes:
    xattrs = hashlib.sha256(repr(entry.xattrs).encode()).digest()[:8] if entry.xattrs else b""
    return digest + struct.pack(">QQQQ", entry.size, entry.uid, entry.gid, entry.mode) + xattrs


@dataclass
class Counts:
    entries: int = 0
    files: int = 0  # regular files
    candidates: int = 0
    hashed_bytes: int = 0
    spooled: int = 0
    reread: int = 0
    files_linked: int = 0
    bytes_saved: int = 0
    bytes_read: int = 0
    bytes_sent: int = 0
    out_of_reach: int = 0  # lookback only: earlier copies compared with too late, their bytes gone (never linked to)
    unhashed: int = 0  # census only: first copies not hashed, their size counted once


def _slim(entry: Entry) -> Entry:
    """``entry`` without its header blocks (about 200 bytes kept per first copy instead of 1 KiB or more).

    (The positional constructor: ``dataclasses.replace`` cost a third of a lookback pass's own work.)
    """
    return Entry(b"", entry.name, entry.type, entry.mode, entry.uid, entry.gid, entry.size, entry.linkname,
                 entry.xattrs, entry.mtime_field, entry.owner_fields)


class Relinker:
    """Link duplicates on the way from an export stream to an import stream (see the module docstring).

    Iterate :meth:`stream` to get the chunks to send; afterwards :attr:`counts`,
    :attr:`sent_sha256` and :attr:`listing_sha256` are final.  ``link=False`` copies
    every entry (the listing and hashes are still made).

    ``lookback=0`` (the default) hashes every candidate as it passes, so a duplicate is
    found however far apart the copies are.  ``lookback=N`` hashes a first copy only
    when a file of its size (and owner, mode, xattrs) follows, from the last N bytes
    sent, which are kept; a first copy whose bytes are no longer kept is never linked to
    (``counts.out_of_reach``).  That costs about N bytes of memory (the bytes, and the first copies
    among them not hashed yet) and finds only duplicates
    less than N bytes apart, but hashes nothing else.

    ``census`` (size -> how many candidate files have it, or more; see census.py)
    lets the eager mode skip hashing a first copy whose size is counted once: no
    later file can duplicate it.  Links still need equal sha256, so a census that
    counts too few could cost a link, never make a wrong one.
    """

    def __init__(self, chunks: Iterable[bytes], roots: Sequence[str], *, spool_bound: int = SPOOL_BOUND,
                 reread: Callable[[str], bytes] | None = None, link: bool = True, lookback: int = 0,
                 census: Mapping[int, int] | None = None) -> None:
        self._reader = _Reader(chunks)
        self._roots = Roots(roots)
        self.spool_bound = spool_bound
        self._reread = reread
        self._link = link
        self.lookback = lookback
        self._census = census
        self._sizes: set[int] = set()
        self._first: dict[bytes, tuple[str, Entry]] = {}
        # lookback: first copies not hashed yet, by size, each with the offset of its data in the stream sent;
        # dropped (in offset order) as their bytes leave the lookback, so they are bounded by it too.
        self._pending: dict[int, deque[tuple[int, Entry]]] = {}
        self._pending_order: deque[tuple[int, int]] = deque()  # (offset, size), oldest first
        self._gone: set[int] = set()  # sizes of first copies dropped unhashed
        self._kept: deque[tuple[int, bytearray]] = deque()  # lookback: (offset, chunk) of the last bytes sent
        self._kept_bytes = 0
        self._sent = hashlib.sha256()
        self._listing = hashlib.sha256()
        self._lines: list[str] = []
        self.counts = Counts()
        self.peak_spool = 0
        self._out = bytearray()
        self.done = False

    @property
    def sent_sha256(self) -> str:
        return "sha256:" + self._sent.hexdigest()

    @property
    def listing_sha256(self) -> str:
        self._hash_lines()
        return "sha256:" + self._listing.hexdigest()

    def _hash_lines(self) -> None:
        if self._lines:
            self._listing.update("".join(self._lines).encode("utf-8", "surrogateescape"))
            self._lines = []

    def _flush(self) -> Iterator[bytes]:
        if self._out:
            chunk, self._out = self._out, bytearray()
            self._sent.update(chunk)
            if self.lookback:
                self._kept.append((self.counts.bytes_sent, chunk))
                self._kept_bytes += len(chunk)
                while self._kept_bytes - len(self._kept[0][1]) >= self.lookback:
                    self._kept_bytes -= len(self._kept.popleft()[1])
                self._drop_pending(self._kept[0][0])
            self.counts.bytes_sent += len(chunk)
            self._hash_lines()
            yield chunk

    def _emit_link(self, entry: Entry, target_name: str, target: Entry) -> None:
        """A hard-link member for ``entry``, parsed again and checked against the linking rule before it is sent."""
        raw = link_header(entry.name, target_name, target)
        written = parse_headers(raw)
        if not (written.type == b"1" and written.name == entry.name and written.linkname == target_name
                and (target.size, target.uid, target.gid, target.mode, target.xattrs)
                == (entry.size, entry.uid, entry.gid, entry.mode, entry.xattrs)):
            raise StreamError(f"wrote a link for {entry.path} that breaks the linking rule")
        self._out += raw

    def _list(self, entry: Entry, digest: bytes | None) -> None:
        link = entry.linkname if entry.type in (b"1", b"2") else "-"
        self._lines.append("\t".join((entry.path, entry.type.decode("latin-1") or "0", f"{entry.mode:o}",
                                      f"{entry.uid}:{entry.gid}", str(entry.size) if entry.regular else "-",
                                      digest.hex() if digest else "-", link,
                                      ",".join(k for k, _ in entry.xattrs))) + "\n")

    def stream(self) -> Iterator[bytes]:
        """The tar to send, in chunks of about 1 MiB.

        Every member that is not linked is sent with the header blocks it was read
        with, byte for byte; a link member is parsed again and checked before it is sent.

        Raises:
            StreamError: the export stream is truncated or corrupt, or a check of what was written failed.
        """
        reader = self._reader
        roots = self._roots
        while True:
            entry = read_entry(reader)
            if entry is None:
                break
            self.counts.entries += 1
            if not entry.regular or entry.size == 0 or not roots.holds(entry.path):
                self.counts.files += entry.regular
                self._list(entry, None)
                self._out += entry.raw
                yield from self._copy(entry.size)
                continue
            self.counts.files += 1
            self.counts.candidates += 1
            yield from self._candidate(entry)
        self._out += ZERO_BLOCK * 2
        yield from self._flush()
        reader.drain()
        self.counts.bytes_read = reader.offset
        self.done = True

    def _copy(self, size: int, digest: hashlib._Hash | None = None) -> Iterator[bytes]:
        """Copy ``size`` data bytes and the padding after them, hashing into ``digest`` when given."""
        out = self._out
        for piece in self._reader.pieces(_padded(size)):
            if digest is not None and size > 0:
                digest.update(piece[:size])
                size -= len(piece)
            out += piece
            if len(out) >= OUT_CHUNK:
                yield from self._flush()
                out = self._out

    def _candidate(self, entry: Entry) -> Iterator[bytes]:
        counts = self.counts
        if entry.size not in self._sizes:  # cannot be a duplicate of anything before it: out at once
            self._sizes.add(entry.size)
            self._out += entry.raw
            if self.lookback:  # hashed only if a file of its size follows while its bytes are kept
                offset = counts.bytes_sent + len(self._out)
                queue = self._pending.get(entry.size)
                if queue is None:
                    queue = self._pending[entry.size] = deque()
                queue.append((offset, entry))
                self._pending_order.append((offset, entry.size))
                self._list(entry, None)
                yield from self._copy(entry.size)
                return
            if self._census is not None and self._census.get(entry.size, 0) <= 1:
                counts.unhashed += 1  # no other file has its size: nothing can link to it
                self._list(entry, None)
                yield from self._copy(entry.size)
                return
            counts.hashed_bytes += entry.size
            digest = hashlib.sha256()
            yield from self._copy(entry.size, digest)
            self._remember(digest.digest(), entry)
            return
        if self.lookback:
            self._resolve(entry)
        counts.hashed_bytes += entry.size
        if entry.size <= self.spool_bound:
            counts.spooled += 1
            data = bytearray()
            for piece in self._reader.pieces(_padded(entry.size)):
                data += piece
            self.peak_spool = max(self.peak_spool, len(data))
            digest = hashlib.sha256(memoryview(data)[:entry.size]).digest()
            yield from self._decide(entry, digest, data)
            return
        if self._reread is not None:  # too big to hold: read it once more through the engine first
            counts.reread += 1
            digest = self._reread(entry.path)
            yield from self._decide(entry, digest, None)
            return
        digest_obj = hashlib.sha256()
        self._out += entry.raw
        yield from self._copy(entry.size, digest_obj)
        self._remember(digest_obj.digest(), entry)

    def _resolve(self, entry: Entry) -> None:
        """lookback: hash the unhashed first copies that ``entry`` could duplicate, from the bytes kept."""
        if entry.size in self._gone:  # an earlier copy of this size left the lookback unhashed
            self._gone.discard(entry.size)
            self.counts.out_of_reach += 1
        pending = self._pending.pop(entry.size, None)
        if not pending:
            return
        left: deque[tuple[int, Entry]] = deque()
        for offset, first in pending:
            if (first.uid, first.gid, first.mode, first.xattrs) != (entry.uid, entry.gid, entry.mode, entry.xattrs):
                left.append((offset, first))
                continue
            digest = self._kept_digest(offset, entry.size)
            if digest is None:
                self.counts.out_of_reach += 1
                continue
            self.counts.hashed_bytes += entry.size
            key = _meta_key(digest, first)
            if key not in self._first:
                self._first[key] = (first.name, _slim(first))
        if left:
            self._pending[entry.size] = left

    def _drop_pending(self, window_start: int) -> None:
        """lookback: forget the first copies whose data starts before the bytes still kept."""
        order, pending = self._pending_order, self._pending
        while order and order[0][0] < window_start:
            offset, size = order.popleft()
            queue = pending.get(size)
            if queue and queue[0][0] == offset:  # (not resolved meanwhile)
                queue.popleft()
                if not queue:
                    del pending[size]
                self._gone.add(size)

    def _kept_digest(self, offset: int, size: int) -> bytes | None:
        """The sha256 of ``size`` bytes sent from ``offset``, or None when they are no longer kept."""
        if (self._kept[0][0] if self._kept else self.counts.bytes_sent) > offset:
            return None
        digest = hashlib.sha256()
        end = offset + size
        for start, chunk in (*self._kept, (self.counts.bytes_sent, self._out)):
            lo, hi = max(offset, start), min(end, start + len(chunk))
            if lo < hi:
                with memoryview(chunk) as view:
                    digest.update(view[lo - start:hi - start])
        return digest.digest()

    def _decide(self, entry: Entry, digest: bytes, data: bytearray | None) -> Iterator[bytes]:
        first = self._first.get(_meta_key(digest, entry)) if self._link else None
        if first is not None:
            self._emit_link(entry, first[0], first[1])
            self.counts.files_linked += 1
            self.counts.bytes_saved += entry.size
            self._list(entry, digest)
            if data is None and self._consume(entry.size) != digest:
                raise StreamError(f"gave {entry.path} other bytes than the engine's archive endpoint")
            if len(self._out) >= OUT_CHUNK:
                yield from self._flush()
            return
        self._out += entry.raw
        if data is not None:
            self._out += data
            if len(self._out) >= OUT_CHUNK:
                yield from self._flush()
        else:
            check = hashlib.sha256()
            yield from self._copy(entry.size, check)
            if check.digest() != digest:
                raise StreamError(f"gave {entry.path} other bytes than the engine's archive endpoint")
        self._remember(digest, entry)

    def _consume(self, size: int) -> bytes:
        """Read (and drop) ``size`` data bytes and their padding; returns the data's sha256."""
        digest = hashlib.sha256()
        left = size
        for piece in self._reader.pieces(_padded(size)):
            if left > 0:
                digest.update(piece[:left])
                left -= len(piece)
        return digest.digest()

    def _remember(self, digest: bytes, entry: Entry) -> None:
        key = _meta_key(digest, entry)
        if key not in self._first:  # kept without its header blocks: about 200 bytes a file
            self._first[key] = (entry.name, _slim(entry))
        self._list(entry, digest)


def file_digest(chunks: Iterable[bytes]) -> bytes:
    """The sha256 of the first regular file in a tar stream (the engine's archive of one path).

    Raises:
        StreamError: the stream holds no regular file or is truncated.
    """
    reader = _Reader(chunks)
    entry = read_entry(reader)
    if entry is None or not entry.regular:
        raise StreamError("holds no regular file where one was expected")
    digest = hashlib.sha256()
    left = entry.size
    for piece in reader.pieces(_padded(entry.size)):
        if left > 0:
            digest.update(piece[:left])
            left -= len(piece)
    reader.drain()
    return digest.digest()

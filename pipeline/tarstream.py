"""One pass over a tar stream: link duplicate files, list the tree, and hash what is sent.

:class:`Relinker` reads a ``docker export`` stream (an iterable of byte chunks)
and yields the tar to send to ``docker import``.  Every entry is copied
byte for byte (its header blocks included), except a regular file that
duplicates an earlier one: that one is written as a hard-link entry to the
first copy.  Two files are linked only when size, content (sha256), owner,
mode and extended attributes are all equal; symlinks, empty files and files
outside ``roots`` are never touched.  Nothing is written to disk.

Hashing: a stream cannot be rewound, so by default the digest of the *first* file
of a size is taken as it passes (the later one is compared with it), however far
apart the copies are; only candidate files (regular, non-empty, under ``roots``) are
hashed.  ``lookback=N`` instead hashes a first copy only when a file of its size
follows while its bytes are still among the last N bytes sent (kept in memory);
it hashes little more than the files that recur, but never links to a copy that
left the lookback (``docker export`` walks the tree in order, so the copies of a
file in two conda envs lie a whole env apart).  Asking the engine for an earlier
file again costs about 40 ms a file (measured), which is why neither mode does.

Spool: a file whose size was seen before must be decided before its header is
written, so its data is held in memory, up to ``spool_bound`` bytes (default
64 MiB).  A larger one is read through ``reread`` (the Engine API's archive
endpoint) first when given, else it is copied out unlinked.  Peak memory is
therefore the spool bound, plus about 2 MiB of I/O buffers, plus the lookback,
plus about 200 bytes per candidate file for the table of first copies.

Verification on the way: a member that is not linked is sent with exactly the
header blocks it was read with; a link member is generated, so it is parsed again
and checked against the rule before it is sent; the data bytes written are
counted.  :attr:`Relinker.sent_sha256` is the sha256 of every byte yielded, which
is the diffID ``docker import`` gives the layer it made from them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from pipeline.errors import PipelineError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
SPOOL_BOUND = 64 << 20
OUT_CHUNK = 1 << 20
REGULAR = (b"0", b"\0", b"7")
_POSIX_MAGIC = b"ustar\x0000"


class StreamError(PipelineError):
    """The tar stream is truncated or corrupt, or what was written does not match what was read."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar member: ``raw`` is every header block of it (PAX/GNU blocks included), unchanged."""

    raw: bytes
    name: str  # as in the archive (trailing slash of directories removed)
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    xattrs: tuple[tuple[str, bytes], ...]
    mtime_field: bytes  # the ustar mtime field, copied into link entries made for duplicates
    owner_fields: bytes  # uname + gname

    @property
    def path(self) -> str:
        return "/" + self.name.lstrip("/").removeprefix("./")

    @property
    def regular(self) -> bool:
        return self.type in REGULAR

    def same(self, other: Entry) -> bool:
        return (self.name, self.type, self.mode, self.uid, self.gid, self.size, self.linkname, self.xattrs) == \
            (other.name, other.type, other.mode, other.uid, other.gid, other.size, other.linkname, other.xattrs)


class _Reader:
    """Exact reads over an iterable of chunks; ``offset`` counts the bytes consumed.

    A read that straddles two chunks copies only the bytes it returns (never the rest of a chunk).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = memoryview(b"")
        self.offset = 0

    def _next(self) -> memoryview | None:
        for chunk in self._it:
            if chunk:
                return memoryview(chunk)
        return None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the stream)."""
        buf = self._buf
        if len(buf) >= n:
            self._buf = buf[n:]
            self.offset += n
            return bytes(buf[:n])
        parts, have = [bytes(buf)], len(buf)
        self._buf = memoryview(b"")
        while have < n and (chunk := self._next()) is not None:
            take = chunk[:n - have]
            parts.append(bytes(take))
            have += len(take)
            self._buf = chunk[len(take):]
        self.offset += have
        return b"".join(parts)

    def pieces(self, n: int) -> Iterator[memoryview]:
        """``n`` bytes as zero-copy slices; raises StreamError when the stream ends first."""
        while n > 0:
            if not self._buf:
                chunk = self._next()
                if chunk is None:
                    raise StreamError(f"is truncated: it ends {n} bytes short of the end of a file "
                                      f"(at byte {self.offset})")
                self._buf = chunk
            piece, self._buf = self._buf[:n], self._buf[n:]
            n -= len(piece)
            self.offset += len(piece)
            yield piece

    def drain(self) -> None:
        for _ in self._it:
            pass


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU), used for values that do not fit in octal
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" \0")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise StreamError(f"holds a tar header with a bad number field {text[:20]!r}") from None


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored == unsigned:
        return True
    signed = sum(struct.unpack("148b", block[:148])) + 8 * 32 + sum(struct.unpack("356b", block[156:]))
    return stored == signed


def _pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise StreamError("holds a malformed PAX header") from None
        if space < 0 or length <= 0:
            raise StreamError("holds a malformed PAX header")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def read_entry(reader: _Reader) -> Entry | None:
    """The next member's headers (its data is left to read); None at the end-of-archive marker.

    Raises:
        StreamError: the stream ends inside a header, or a header's checksum is wrong.
    """
    raw = bytearray()
    pax: dict[str, bytes] = {}
    long_name = long_link = None
    while True:
        start = reader.offset
        block = reader.read(BLOCK)
        if len(block) < BLOCK:
            raise StreamError(f"ends at byte {reader.offset} without the tar end-of-archive marker (truncated)")
        if block == ZERO_BLOCK and not raw:
            return None
        if not _checksum_ok(block):
            raise StreamError(f"is corrupt: bad tar header checksum at byte {start}")
        kind = block[156:157]
        size = _number(block[124:136])
        if kind in (b"x", b"g", b"L", b"K"):
            data = reader.read(_padded(size))
            if len(data) < _padded(size):
                raise StreamError(f"ends inside a tar header at byte {reader.offset} (truncated)")
            raw += block + data
            if kind == b"x":
                pax.update(_pax(data[:size]))
            elif kind == b"L":
                long_name = _text(data[:size])
            elif kind == b"K":
                long_link = _text(data[:size])
            continue
        raw += block
        name = long_name if long_name is not None else _text(block[:100])
        if long_name is None and block[257:265] == _POSIX_MAGIC and block[345] != 0:
            name = _text(block[345:500]) + "/" + name
        if "path" in pax:
            name = pax["path"].decode("utf-8", "surrogateescape")
        link = long_link if long_link is not None else _text(block[157:257])
        if "linkpath" in pax:
            link = pax["linkpath"].decode("utf-8", "surrogateescape")
        xattrs = tuple(sorted((k, v) for k, v in pax.items() if "xattr." in k))
        return Entry(bytes(raw), name.rstrip("/") or name, kind, _number(block[100:108]),
                     int(pax["uid"]) if "uid" in pax else _number(block[108:116]),
                     int(pax["gid"]) if "gid" in pax else _number(block[116:124]),
                     int(pax["size"]) if "size" in pax else size, link, xattrs,
                     bytes(block[136:148]), bytes(block[265:329]))


def parse_headers(raw: bytes) -> Entry:
    """Parse a member's header blocks on their own (used to check what was written)."""
    entry = read_entry(_Reader([raw]))
    if entry is None:
        raise StreamError("wrote an empty header")
    return entry


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def _pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _block(name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: bytes, link: bytes,
           owners: bytes) -> bytes:
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode & 0o7777777, 8)
    block[108:116] = _octal(min(uid, 0o7777777), 8)
    block[116:124] = _octal(min(gid, 0o7777777), 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = mtime
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[157:257] = link[:100].ljust(100, b"\0")
    block[257:265] = _POSIX_MAGIC
    block[265:329] = owners
    block[329:345] = _octal(0, 8) * 2
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def link_header(name: str, target: str, like: Entry) -> bytes:
    """A hard-link member ``name`` -> ``target`` carrying ``like``'s mode, owner and mtime.

    docker's untar applies a link member's mode, owner and times to the shared inode,
    so they are the first copy's (equal by the linking rule, mtime included).
    """
    name_b, link_b = name.encode("utf-8", "surrogateescape"), target.encode("utf-8", "surrogateescape")
    records = b""
    if len(name_b) > 100 or not name_b.isascii():
        records += _pax_record("path", name_b)
    if len(link_b) > 100 or not link_b.isascii():
        records += _pax_record("linkpath", link_b)
    for key, value, limit in (("uid", like.uid, 0o7777777), ("gid", like.gid, 0o7777777)):
        if value > limit:
            records += _pax_record(key, str(value).encode())
    head = b""
    if records:
        head = _block(b"PaxHeaders/" + name_b.rsplit(b"/", 1)[-1][:80], b"x", 0o644, 0, 0, len(records),
                      like.mtime_field, b"", bytes(64)) + records + bytes(_padded(len(records)) - len(records))
    return head + _block(name_b, b"1", like.mode, like.uid, like.gid, 0, like.mtime_field, link_b,
                         like.owner_fields)


# -- which files may be linked -------------------------------------------------------------------

class Roots:
    """Directories (shell globs allowed, one path component per ``*``) whose files may be linked."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [tuple(p for p in pattern.strip("/").split("/") if p) for pattern in patterns if pattern]
        self._dirs: dict[str, bool] = {}

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


@dataclass(slots=True)
class _Pending:
    """lookback only: a first copy not hashed yet, and where its data lies in the stream sent."""

    name: str
    entry: Entry
    offset: int


class Relinker:
    """Link duplicates on the way from an export stream to an import stream (see the module docstring).

    Iterate :meth:`stream` to get the chunks to send; afterwards :attr:`counts`,
    :attr:`sent_sha256` and :attr:`listing_sha256` are final.  ``link=False`` copies
    every entry (the listing and hashes are still made).

    ``lookback=0`` (the default) hashes every candidate as it passes, so a duplicate is
    found however far apart the copies are.  ``lookback=N`` hashes a first copy only
    when a file of its size (and owner, mode, xattrs) follows, from the last N bytes
    sent, which are kept; a first copy whose bytes are no longer kept is never linked to
    (``counts.out_of_reach``).  That costs N bytes of memory and finds only duplicates
    less than N bytes apart, but hashes nothing else.
    """

    def __init__(self, chunks: Iterable[bytes], roots: Sequence[str], *, spool_bound: int = SPOOL_BOUND,
                 reread: Callable[[str], bytes] | None = None, link: bool = True, lookback: int = 0) -> None:
        self._reader = _Reader(chunks)
        self._roots = Roots(roots)
        self.spool_bound = spool_bound
        self._reread = reread
        self._link = link
        self.lookback = lookback
        self._sizes: set[int] = set()
        self._first: dict[bytes, tuple[str, Entry]] = {}
        self._pending: dict[int, list[_Pending]] = {}
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
                self._pending.setdefault(entry.size, []).append(
                    _Pending(entry.name, replace(entry, raw=b""), counts.bytes_sent + len(self._out)))
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
        pending = self._pending.get(entry.size)
        if not pending:
            return
        left = []
        for first in pending:
            if (first.entry.uid, first.entry.gid, first.entry.mode, first.entry.xattrs) != \
                    (entry.uid, entry.gid, entry.mode, entry.xattrs):
                left.append(first)
                continue
            digest = self._kept_digest(first.offset, entry.size)
            if digest is None:
                self.counts.out_of_reach += 1
                continue
            self.counts.hashed_bytes += entry.size
            key = _meta_key(digest, first.entry)
            if key not in self._first:
                self._first[key] = (first.name, first.entry)
        if left:
            self._pending[entry.size] = left
        else:
            del self._pending[entry.size]

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
            self._first[key] = (entry.name, replace(entry, raw=b""))
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

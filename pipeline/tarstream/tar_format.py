"""The tar format, as the relinker reads and writes it: headers (ustar, GNU, pax), entries, link headers."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipeline.errors import PipelineError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
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

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
hashed.  With a ``census`` of the sizes in the tree (census.py: stat data of the
engine's layer directories, when it is local), a first copy whose size occurs once
is not hashed at all: only the files whose size recurs are.  ``lookback=N`` instead hashes a first copy only when a file of its size
follows while its bytes are still among the last N bytes sent (kept in memory);
it hashes little more than the files that recur, but never links to a copy that
left the lookback (``docker export`` walks the tree in order, so the copies of a
file in two conda envs lie a whole env apart).  Asking the engine for an earlier
file again costs about 40 ms a file (measured), which is why neither mode does.

Spool: a file whose size was seen before must be decided before its header is
written, so its data is held in memory, up to ``spool_bound`` bytes (default
64 MiB).  A larger one is read through ``reread`` (the Engine API's archive
endpoint) first when given, else it is copied out unlinked.  Peak memory is
therefore the spool bound, plus about 2 MiB of I/O buffers, plus about 200 bytes
per candidate file for the table of first copies (eager); with ``lookback=N``, N
for the bytes kept plus the first copies not hashed yet, whose data lies among
them (at most about 0.8 N more, for a window of one-block files), and 200 bytes
per first copy hashed.

Verification on the way: a member that is not linked is sent with exactly the
header blocks it was read with; a link member is generated, so it is parsed again
and checked against the rule before it is sent; the data bytes written are
counted.  :attr:`Relinker.sent_sha256` is the sha256 of every byte yielded, which
is the diffID ``docker import`` gives the layer it made from them.
"""

from __future__ import annotations

from pipeline.tarstream.census import count_sizes
from pipeline.tarstream.relinker import OUT_CHUNK, SPOOL_BOUND, Counts, Relinker, Roots, file_digest
from pipeline.tarstream.tar_format import (
    BLOCK,
    REGULAR,
    ZERO_BLOCK,
    Entry,
    StreamError,
    _Reader,
    link_header,
    parse_headers,
    read_entry,
)

__all__ = ["BLOCK", "OUT_CHUNK", "REGULAR", "SPOOL_BOUND", "ZERO_BLOCK", "Counts", "Entry", "Relinker", "Roots",
           "StreamError", "_Reader", "count_sizes", "file_digest", "link_header", "parse_headers", "read_entry"]

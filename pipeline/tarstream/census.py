"""Which file sizes recur, from stat data alone: the hint that lets the one pass hash only those.

A stream cannot be read twice, so without a census the Relinker hashes every
candidate as it passes: any of them may be the first copy of a later file.  A
census counts the regular files under the roots by size, over directories
whose union holds every file of the exported tree.  For an engine on this host
with the overlay2 driver, those are the created container's layer directories
(its ``GraphDriver`` data: the image's layers, the init layer and the empty
container layer), read with ``lstat`` only: no file's bytes are read.

Counting every layer, files that a later layer overwrites or deletes included,
can only count too many, never too few: a size counted once occurs at most once
in the export, so not hashing that file never loses a link.  A census is only
ever a hint: links still need equal sha256, size, owner, mode and xattrs, so a
wrong census could cost a link, never make a wrong one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from pipeline.tarstream.relinker import Roots

log = logging.getLogger(__name__)


def count_sizes(dirs: Iterable[str], roots: Roots) -> dict[int, int] | None:
    """How many non-empty regular files of each size lie under ``roots`` in the union of ``dirs``.

    Paths are taken relative to each directory (as ``/opt/conda/...``); a directory that
    can hold no root (``/usr/share`` for the default roots) is not walked.  None when a
    directory cannot be read: the caller then hashes every candidate.
    """
    sizes: dict[int, int] = {}
    for top in dirs:
        try:
            fd = os.open(top, _DIR)
        except OSError as exc:
            log.debug("no census: %s: %s", top, exc)
            return None
        try:
            _walk(fd, "", roots, sizes)
        except (OSError, RecursionError) as exc:  # (a tree nested ~1,000 deep: no census, not a traceback)
            log.debug("no census: %s: %s", top, exc)
            return None
    return sizes


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _walk(fd: int, rel: str, roots: Roots, sizes: dict[int, int]) -> None:
    """Count the files below the open directory ``fd`` (closed here).

    Entries are stat'ed relative to it (fstatat: a fifth cheaper than full paths), and
    only one descriptor per level is open at a time.
    """
    below: list[str] = []
    try:
        inside = roots.holds(rel + "/-")  # are the files right in this directory candidates?
        with os.scandir(fd) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    if inside:
                        size = entry.stat(follow_symlinks=False).st_size
                        if size:
                            sizes[size] = sizes.get(size, 0) + 1
                elif entry.is_dir(follow_symlinks=False) and roots.may_hold_below(f"{rel}/{entry.name}"):
                    below.append(entry.name)
        for name in below:
            _walk(os.open(name, _DIR, dir_fd=fd), f"{rel}/{name}", roots, sizes)
    finally:
        os.close(fd)

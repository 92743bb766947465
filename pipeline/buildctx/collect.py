"""Resolve a Dockerfile's context sources to the entries the pipeline keys and sends.

An entry is a directory, a regular file (content digest and mode) or a symlink
(its target), at a context-relative path.  Modes are reduced the way git sees
them: 0755 for directories and executables, 0644 for other files, so keys and
images do not depend on a runner's umask.  The same entries are written into
the build context (see send.py): the build can read nothing the key missed.

Docker's rules, modelled here:

- ``.dockerignore`` is applied first: an ignored path is not in the context.
- A source with wildcards matches every context path (Go's filepath.Match).
- A symlink named as a source, or in the path to one, is followed inside the
  context, and the link and its target are both sent; a symlink inside a
  copied directory is copied as a link.
- A followed symlink that leaves the context, and FIFOs, sockets and device
  files, are refused: the key cannot cover them.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from pipeline.buildctx.ignore import Ignore, glob_match, has_wildcards, read_dockerignore
from pipeline.dockerfile.analysis import Source
from pipeline.hashing import FileHasher

DIR_MODE = 0o755
_MAX_LINKS = 40


class ContextError(ValueError):
    """A source the model refuses; ``line`` is the Dockerfile line (1-based) that names it."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Entry:
    kind: str  # "dir" | "file" | "link"
    mode: int = DIR_MODE
    digest: str = ""  # files
    target: str = ""  # links

    def keyed(self) -> str:
        if self.kind == "file":
            return f"file:{self.mode:o}:{self.digest}"
        if self.kind == "link":
            return f"link:{self.target}"
        return "dir"


def normal_mode(st_mode: int) -> int:
    if stat.S_ISDIR(st_mode):
        return DIR_MODE
    return 0o755 if st_mode & stat.S_IXUSR else 0o644


class Collector:
    """Collect the entries of one build's sources in ``context``."""

    def __init__(self, context: Path, hasher: FileHasher, *, allow_empty_globs: bool) -> None:
        self.context = context
        self.hasher = hasher
        self.allow_empty_globs = allow_empty_globs
        self.ignore = Ignore(read_dockerignore(context))
        self.entries: dict[str, Entry] = {}
        self.listed: list[str] = []  # every directory whose listing was read ("." the context): its mtime keys it too
        self._listing: list[str] | None = None

    def add(self, source: Source) -> None:
        """Add what ``source`` reads.

        Raises:
            ContextError: the source is missing, leaves the context, or holds a file that cannot be keyed.
        """
        rel = _clean(source.path)
        if rel.startswith("../") or rel == "..":
            raise ContextError(source.line, f"source {source.path} is outside the build context {self.context}")
        if has_wildcards(rel):
            try:
                matches = [p for p in self._all_paths() if glob_match(rel, p)]
            except ValueError as exc:
                raise ContextError(source.line, f"source {source.path}: {exc}") from None
            if not matches and not self.allow_empty_globs:
                raise ContextError(source.line, f"source {source.path} matches no file in the build context "
                                                f"{self.context}; the classic builder fails on it ('no source files')")
            for match in matches:
                self._named(match, source)
            return
        self._named(rel, source)

    # -- named sources: followed ---------------------------------------------------------

    def _named(self, rel: str, source: Source) -> None:
        if rel == ".dockerignore":
            raise ContextError(source.line, f"{source.path}: the pipeline never sends .dockerignore itself; "
                                            "copy another file")
        resolved = self._resolve(rel, source)
        if resolved != "." and self.ignore.excluded(resolved):
            raise ContextError(source.line, f"source {source.path} is excluded by {self.context / '.dockerignore'}")
        full = self.context / resolved
        try:
            st = full.lstat()
        except OSError:
            raise ContextError(source.line, f"source {source.path} not found in the build context {self.context}; "
                                            "create it or fix the line") from None
        if stat.S_ISDIR(st.st_mode):
            self._walk(resolved, source)
        else:
            self._file(resolved, full, st, source)

    def _resolve(self, rel: str, source: Source) -> str:
        """Follow symlinks in ``rel`` inside the context, recording each link as an entry."""
        if rel == ".":
            return rel
        parts = rel.split("/")
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            current = "/".join([*done, part])
            full = self.context / current
            try:
                st = full.lstat()
            except OSError:  # missing, or a file where a directory should be
                return "/".join([current, *parts])  # reported by the caller
            if not stat.S_ISLNK(st.st_mode):
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINKS:
                raise ContextError(source.line, f"source {source.path}: too many levels of symlinks")
            target = os.readlink(full)
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise ContextError(source.line, f"source {source.path}: symlink {current} -> {target} leaves the "
                                                f"build context; copy the file into {self.context} instead")
            self.entries[current] = Entry("link", target=target)
            done = [] if joined == "." else joined.split("/")
            # The target may itself contain links: resolve it from the top again.
            parts = [*done, *parts]
            done = []
        return "/".join(done) or "."

    # -- inside a copied directory: links stay links -------------------------------------

    def _walk(self, top: str, source: Source) -> None:
        if top != ".":
            self.entries[top] = Entry("dir")
        stack = [top]
        while stack:
            rel_dir = stack.pop()
            full_dir = self.context if rel_dir == "." else self.context / rel_dir
            self.listed.append(rel_dir)
            try:
                children = sorted(os.scandir(full_dir), key=lambda e: e.name)
            except OSError as exc:
                raise ContextError(source.line, f"cannot read {full_dir}: {exc.strerror}") from None
            for child in children:
                rel = child.name if rel_dir == "." else f"{rel_dir}/{child.name}"
                if rel == ".dockerignore":
                    continue
                st = child.stat(follow_symlinks=False)
                is_dir = stat.S_ISDIR(st.st_mode)
                if self.ignore.excluded(rel) or _excluded(rel, top, source.excludes):
                    if is_dir and self.ignore.may_reinclude_below(rel):
                        stack.append(rel)
                    continue
                if is_dir:
                    self.entries[rel] = Entry("dir")
                    stack.append(rel)
                elif stat.S_ISLNK(st.st_mode):
                    self.entries[rel] = Entry("link", target=os.readlink(child.path))
                else:
                    self._file(rel, Path(child.path), st, source)

    def _file(self, rel: str, full: Path, st: os.stat_result, source: Source) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise ContextError(source.line, f"{full} is not a regular file, directory or symlink (a FIFO, socket "
                                            "or device cannot be keyed); remove it or add it to .dockerignore")
        try:
            digest = self.hasher.digest(full)
        except OSError as exc:
            raise ContextError(source.line, f"cannot read build context file {full}: {exc.strerror}") from None
        self.entries[rel] = Entry("file", normal_mode(st.st_mode), digest)

    def _all_paths(self) -> list[str]:
        """Every path Docker would send, for wildcard matching (listed once per build)."""
        if self._listing is None:
            out: list[str] = []
            stack = ["."]
            while stack:
                rel_dir = stack.pop()
                full_dir = self.context if rel_dir == "." else self.context / rel_dir
                self.listed.append(rel_dir)
                try:
                    children = list(os.scandir(full_dir))
                except OSError:
                    continue
                for child in children:
                    rel = child.name if rel_dir == "." else f"{rel_dir}/{child.name}"
                    is_dir = child.is_dir(follow_symlinks=False)
                    if self.ignore.excluded(rel):
                        if is_dir and self.ignore.may_reinclude_below(rel):
                            stack.append(rel)
                        continue
                    out.append(rel)
                    if is_dir:
                        stack.append(rel)
            self._listing = sorted(out)
        return self._listing

    def with_parents(self) -> dict[str, Entry]:
        """All entries plus the directories above them, sorted (parents first)."""
        out = dict(self.entries)
        for rel in list(self.entries):
            parent = posixpath.dirname(rel)
            while parent and parent not in out:
                out[parent] = Entry("dir")
                parent = posixpath.dirname(parent)
        return dict(sorted(out.items()))


def _excluded(rel: str, top: str, excludes: tuple[str, ...]) -> bool:
    if not excludes:
        return False
    inner = rel if top == "." else rel[len(top) + 1 :]
    return any(glob_match(_clean(p), inner) or glob_match(_clean(p), rel) for p in excludes)


def _clean(path: str) -> str:
    path = path.strip()
    cleaned = posixpath.normpath("/" + path.lstrip("/")) if not path.startswith("..") else posixpath.normpath(path)
    return cleaned.lstrip("/") or "."

"""``.dockerignore`` rules and COPY wildcards, matched the way Docker matches them.

Ignore patterns follow moby/patternmatcher: cleaned paths, ``**`` for any number
of directories, ``!`` exceptions with the last match winning, and a pattern that
matches a parent directory excluding everything below it.  COPY sources with
wildcards follow Go's ``filepath.Match`` (``*`` and ``?`` never cross ``/``,
``[...]`` classes with ``^`` negation), applied to the whole relative path.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WILDCARDS = frozenset("*?[")


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a "!" line: re-includes what earlier lines excluded
    regex: re.Pattern[str]


def read_dockerignore(context: Path) -> tuple[Pattern, ...]:
    """The context's ``.dockerignore`` rules (none when the file is absent)."""
    path = context / ".dockerignore"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    return compile_patterns(text)


@lru_cache(maxsize=64)
def compile_patterns(text: str) -> tuple[Pattern, ...]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                continue
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line.lstrip("/") or "."
        out.append(Pattern(line, exclusion, re.compile(_ignore_regex(line))))
    return tuple(out)


def _ignore_regex(pattern: str) -> str:
    return _translate(pattern, gitignore=True)


def _translate(pattern: str, *, gitignore: bool) -> str:
    """A regex for ``pattern``: with ``gitignore``, patternmatcher's rules (``**``, a lone ``[`` is literal);
    without, Go's filepath.Match (``*`` only, an unclosed ``[`` is an error).

    Raises:
        ValueError: an unclosed ``[`` in a filepath.Match pattern.
    """
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if gitignore and i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = _class_end(pattern, i)
            if end >= 0:
                out.append(_class(pattern[i + 1 : end]))
                i = end
            elif gitignore:
                out.append(re.escape(ch))
            else:
                raise ValueError(f"syntax error in pattern {pattern!r}")
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def _class_end(pattern: str, i: int) -> int:
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j if j < len(pattern) else -1


def _class(body: str) -> str:
    negate = body.startswith("^")
    if negate:
        body = body[1:]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            i += 1
            out.append(re.escape(body[i]))
        elif ch == "-":
            out.append("-")
        else:
            out.append(re.escape(ch))
        i += 1
    return f"[{'^' if negate else ''}{''.join(out)}]"


class Ignore:
    """The context's exclusion rules; ``excluded(rel)`` is True for a path Docker would not send."""

    def __init__(self, patterns: tuple[Pattern, ...]) -> None:
        self.patterns = patterns
        self.has_exclusions = any(p.exclusion for p in patterns)

    def excluded(self, rel: str) -> bool:
        if not self.patterns:
            return False
        matched = False
        parent = posixpath.dirname(rel)
        parents = parent.split("/") if parent else []
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = bool(pattern.regex.match(rel))
            if not hit:
                for k in range(1, len(parents) + 1):
                    if pattern.regex.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_reinclude_below(self, rel_dir: str) -> bool:
        """Whether an exception pattern could bring back something under an excluded directory."""
        if not self.has_exclusions:
            return False
        prefix = rel_dir + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def has_wildcards(source: str) -> bool:
    return bool(WILDCARDS & set(source))


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern, gitignore=False))


def glob_match(pattern: str, rel: str) -> bool:
    """Go's filepath.Match(pattern, rel).

    Raises:
        ValueError: a malformed pattern (an unclosed ``[``).
    """
    return bool(_glob_regex(pattern).match(rel))

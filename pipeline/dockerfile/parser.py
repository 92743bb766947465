"""Dockerfile text -> instructions, the way BuildKit's parser reads it.

Handles parser directives (``# escape=``), line continuations (with comment and
blank lines inside them), builder flags before the arguments (``COPY --chown=0:0
["a", "/b"]``), the JSON (exec) form, and heredocs on RUN, COPY and ADD, whose
bodies are never read as instructions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)(.*)$")


class ParseError(ValueError):
    """A Dockerfile the model cannot read; ``line`` is 1-based in the parsed text."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Heredoc:
    name: str
    body: str
    expand: bool  # an unquoted name: variables in the body are expanded by the shell/builder


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    flags: tuple[str, ...]  # raw ``--name=value`` words, unexpanded
    rest: str  # the arguments after the flags, raw
    json_args: tuple[str, ...] | None  # the exec form's list, when ``rest`` is a JSON array of strings
    heredocs: tuple[Heredoc, ...]
    line: int  # first line, 1-based
    end_line: int  # last line (a heredoc's terminator included)

    def flag(self, name: str) -> list[str]:
        """Every value given for ``--name`` (``--name`` alone gives "true")."""
        out = []
        for raw in self.flags:
            key, eq, value = raw[2:].partition("=")
            if key.lower() == name:
                out.append(value if eq else "true")
        return out


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[Instruction, ...]
    escape: str


def parse(text: str) -> Dockerfile:
    """Parse Dockerfile text.

    Raises:
        ParseError: an unterminated heredoc or a malformed directive.
    """
    lines = text.splitlines()
    escape = "\\"
    i = 0
    # Parser directives: only at the very top, before any other line.
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i].strip())
        if not match:
            break
        if match.group(1).lower() == "escape":
            if match.group(2) not in ("\\", "`"):
                raise ParseError(i + 1, f"invalid escape directive {match.group(2)!r}: use \\ or `")
            escape = match.group(2)
        i += 1
    out: list[Instruction] = []
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        logical, i = _logical_line(lines, i, escape)
        keyword, _, args = logical.strip().partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            args = more + " " + args
        keyword = keyword.upper()
        flags, rest = split_flags(args.strip(), escape) if keyword not in ("ENV", "ARG", "LABEL") else ((), args.strip())
        heredocs: list[Heredoc] = []
        if keyword in HEREDOC_INSTRUCTIONS:
            for word in words(rest, escape):
                match = _HEREDOC.match(word)
                if not match or not match.group(3):
                    continue
                name, quoted = _unquote(match.group(3))
                body, i = _heredoc_body(lines, i, name, strip_tabs=bool(match.group(2)), start=start)
                heredocs.append(Heredoc(name, body, expand=not quoted))
        out.append(Instruction(keyword, tuple(flags), rest, _json_list(rest), tuple(heredocs), start + 1, i))
    return Dockerfile(tuple(out), escape)


def _logical_line(lines: list[str], i: int, escape: str) -> tuple[str, int]:
    """Join continuation lines; comment and blank lines inside a continuation are dropped."""
    parts: list[str] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        if parts and (not line.strip() or line.lstrip().startswith("#")):
            continue
        trimmed = line.rstrip()
        if trimmed.endswith(escape):
            parts.append(trimmed[:-1])
            continue
        parts.append(line)
        break
    return "".join(parts), i


def _heredoc_body(lines: list[str], i: int, name: str, *, strip_tabs: bool, start: int) -> tuple[str, int]:
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        candidate = line.lstrip("\t") if strip_tabs else line
        if candidate == name:
            return "".join(f"{b}\n" for b in body), i
        body.append(candidate)
    raise ParseError(start + 1, f"heredoc <<{name} has no terminating line {name!r}")


def _unquote(name: str) -> tuple[str, bool]:
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
        return name[1:-1], True
    return name, False


def _json_list(rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def split_flags(args: str, escape: str = "\\") -> tuple[list[str], str]:
    """Leading ``--flag[=value]`` words, and the rest of the line as written."""
    flags: list[str] = []
    rest = args
    while rest.startswith("--"):
        word, rest_after = _first_word(rest, escape)
        if word == "--":
            break
        flags.append(word)
        rest = rest_after.lstrip()
    return flags, rest


def _first_word(text: str, escape: str) -> tuple[str, str]:
    found = words(text, escape, limit=1)
    if not found:
        return "", ""
    # Find where the first word ends in the raw text, honouring quotes and escapes.
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and not quote == "'":
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            break
        i += 1
    return text[:i], text[i:]


def words(text: str, escape: str = "\\", limit: int | None = None) -> list[str]:
    """Split on white space outside quotes; quotes and escapes are kept (expansion removes them)."""
    out: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if in_word:
                out.append("".join(word))
                word, in_word = [], False
                if limit is not None and len(out) >= limit:
                    return out
            i += 1
            continue
        in_word = True
        if ch == escape and quote != "'" and i + 1 < len(text):
            word.append(text[i : i + 2])
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        word.append(ch)
        i += 1
    if in_word:
        out.append("".join(word))
    return out

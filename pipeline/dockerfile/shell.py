"""Word expansion as BuildKit's shell lexer does it for COPY, ADD, ENV, ARG, FROM and RUN flags.

Quotes and escapes are removed; ``$NAME``, ``${NAME}``, ``${NAME:-word}``,
``${NAME-word}``, ``${NAME:+word}``, ``${NAME+word}``, ``${NAME:?msg}`` and
``${NAME?msg}`` are expanded.  Pattern operators (``#``, ``%``, ``/``) are not
modelled: they raise, so a key is never computed from a guess.
"""

from __future__ import annotations

from collections.abc import Callable

Lookup = Callable[[str], "str | None"]


class ExpandError(ValueError):
    """A word the model cannot expand (bad or unsupported substitution, ``${X:?}`` on an unset X)."""


def expand(word: str, lookup: Lookup, escape: str = "\\") -> str:
    """Expand one word.

    Raises:
        ExpandError: see the class.
    """
    out, pos = _process(word, 0, lookup, escape, stop="")
    return out


def _process(text: str, i: int, lookup: Lookup, escape: str, stop: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if stop and ch == stop:
            return "".join(out), i
        if ch == escape:
            if i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
            else:
                out.append(ch)
                i += 1
        elif ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ExpandError(f"unexpected end of word in quoted string: {text!r}")
            out.append(text[i + 1 : end])
            i = end + 1
        elif ch == '"':
            value, i = _double_quoted(text, i + 1, lookup, escape)
            out.append(value)
        elif ch == "$":
            value, i = _dollar(text, i + 1, lookup, escape)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    if stop:
        raise ExpandError(f"missing '{stop}' in {text!r}")
    return "".join(out), i


def _double_quoted(text: str, i: int, lookup: Lookup, escape: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == escape and i + 1 < len(text) and text[i + 1] in ('"', "$", escape):
            out.append(text[i + 1])
            i += 2
        elif ch == "$":
            value, i = _dollar(text, i + 1, lookup, escape)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    raise ExpandError(f"unexpected end of word in double-quoted string: {text!r}")


def _name(text: str, i: int) -> tuple[str, int]:
    start = i
    if i < len(text) and text[i].isdigit():
        return text[i], i + 1
    while i < len(text) and (text[i].isalnum() or text[i] == "_"):
        i += 1
    return text[start:i], i


def _dollar(text: str, i: int, lookup: Lookup, escape: str) -> tuple[str, int]:
    if i >= len(text) or text[i] != "{":
        name, j = _name(text, i)
        if not name:
            return "$", i
        return lookup(name) or "", j
    i += 1
    if i >= len(text) or text[i] in "{}:":
        raise ExpandError(f"bad substitution in {text!r}")
    name, i = _name(text, i)
    if not name or i >= len(text):
        raise ExpandError(f"bad substitution in {text!r}")
    value = lookup(name)
    op = text[i]
    if op == "}":
        return value or "", i + 1
    colon = op == ":"
    if colon:
        i += 1
        if i >= len(text):
            raise ExpandError(f"bad substitution in {text!r}")
        op = text[i]
    if op not in "-+?":
        raise ExpandError(f"unsupported modifier ({op}) in substitution {text!r}")
    word, i = _process(text, i + 1, lookup, escape, stop="}")
    i += 1  # the closing brace
    unset = value is None or (colon and value == "")
    if op == "-":
        return (word if unset else value or ""), i
    if op == "+":
        return ("" if unset else word), i
    if unset:
        raise ExpandError(f"{name}: {word or 'is not set'}")
    return value or "", i

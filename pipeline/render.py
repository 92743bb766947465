"""Render the Dockerfile text that is actually built (parts concatenated, BuildKit cache mounts)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.yamlfile import display

# Package-manager caches mounted into every RUN line in BuildKit mode, unless pipeline.yaml's
# builder.cache_mounts says otherwise (false: none; a list: those).  They live outside the
# image's layers, so they speed rebuilds without making images bigger.
CACHE_MOUNTS = (
    "--mount=type=cache,target=/root/.cache/pip,sharing=locked",
    "--mount=type=cache,target=/var/cache/apt,sharing=locked",
    "--mount=type=cache,target=/var/lib/apt/lists,sharing=locked",
    "--mount=type=cache,target=/root/.npm,sharing=locked",
)
_RUN = re.compile(r"^(\s*)RUN(\s+)", re.IGNORECASE)


def read_sources(sources: Iterable[Path]) -> list[tuple[Path, str]]:
    """Read each Dockerfile part.

    Raises:
        ConfigError: a part is missing or unreadable.
    """
    out = []
    for path in sources:
        try:
            out.append((path, path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError(f"{display(path)}: Dockerfile not found; restore it or fix the config") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{display(path)}: cannot read Dockerfile: {exc}") from None
    return out


def render(parts: list[tuple[Path, str]], *, buildkit: bool, mounts: Sequence[str] | None = None) -> str:
    """Concatenate the parts (each ending in a newline); add cache mounts to RUN lines with BuildKit.

    ``mounts`` are the ``--mount=type=cache,...`` flags (None: CACHE_MOUNTS; empty: none).
    """
    text = "".join(body if body.endswith("\n") else body + "\n" for _, body in parts)
    mounts = CACHE_MOUNTS if mounts is None else tuple(mounts)
    return add_cache_mounts(text, mounts) if buildkit and mounts else text


def add_cache_mounts(text: str, mounts: Sequence[str] = CACHE_MOUNTS) -> str:
    """Insert ``mounts`` after the RUN keyword of every RUN instruction that has no mount of its own.

    Heredoc bodies are never touched: the parser knows where they are.
    """
    from pipeline.dockerfile.parser import ParseError, parse  # BuildKit builds only: a classic no-op never parses

    try:
        instructions = parse(text).instructions
    except ParseError:
        return text  # the dockerfile stage reports it with its line
    lines = text.splitlines(keepends=True)
    for instr in instructions:
        if instr.keyword != "RUN" or instr.flag("mount"):
            continue
        start = instr.line - 1
        match = _RUN.match(lines[start])
        if match:
            flags = " ".join(mounts)
            lines[start] = f"{match.group(1)}RUN {flags}{match.group(2)}" + lines[start][match.end():]
    return "".join(lines)

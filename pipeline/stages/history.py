"""The history view: a mission image's layers, newest first, with sizes and the largest ones marked."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

WIDTH = 70  # of the instruction column
LARGEST = 5
MARK = "*"
_SHELL = "/bin/sh -c "
# The classic builder writes COPY/ADD sources as `file:<sha256>` / `dir:<sha256>`: 64 hex digits that hide the rest.
_CONTENT_HASH = re.compile(r"\b((?:file|dir|multi|sha256):[0-9a-f]{12})[0-9a-f]{52}\b")
_COPY = re.compile(r"^((?:COPY|ADD)(?: --\S+)* )(.*?)( (?:in )?\S+)$")  # command, sources, destination


@dataclass(frozen=True)
class Layer:
    size: int
    cumulative: int
    instruction: str
    largest: bool


@dataclass(frozen=True)
class HistoryResult:
    deployment: str
    ref: str
    image_id: str
    layers: tuple[Layer, ...]  # newest first

    @property
    def total(self) -> int:
        return self.layers[0].cumulative if self.layers else 0

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "layers": len(self.layers), "size": self.total}


def human_size(size: float) -> str:
    """B, kB, MB, GB (powers of 1000, as docker prints them), one decimal above bytes."""
    if size < 1000:
        return f"{int(size)} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def instruction(entry: Mapping[str, Any], *, full: bool = False, width: int = WIDTH) -> str:
    """The layer's instruction in Dockerfile words: ``#(nop)`` stripped, RUN spelled out, shortened unless ``full``."""
    text = str(entry.get("CreatedBy") or "").strip()
    if not text:
        comment = str(entry.get("Comment") or "").strip()
        return comment or "(no instruction recorded)"
    run = text.startswith("RUN ")  # BuildKit writes `RUN /bin/sh -c … # buildkit`
    text = text.removeprefix("RUN ").removesuffix(" # buildkit")
    if text.startswith("|") and _SHELL in text:
        text = text.split(_SHELL, 1)[1]  # drop the `|N ARG=value …` prefix of the build args
    else:
        text = text.removeprefix(_SHELL)
    if text.startswith("#(nop)"):
        text = text.removeprefix("#(nop)").strip()
    elif run or str(entry.get("CreatedBy")).lstrip().startswith(("|", _SHELL)):
        text = "RUN " + text
    if full:
        return text
    return shorten(" ".join(text.split()), width)


def shorten(text: str, width: int = WIDTH) -> str:
    """At most ``width`` characters: content hashes cut to 12 digits first; a COPY/ADD keeps its
    command and destination (sources are elided in the middle); anything else is cut at the end."""
    text = _CONTENT_HASH.sub(r"\1…", text)
    if len(text) <= width:
        return text
    copy = _COPY.match(text)
    if copy:
        head, sources, dest = copy.groups()
        room = width - len(head) - len(dest) - 1
        if room >= 8:
            return f"{head}{sources[:room]}…{dest}"
    return text[: width - 1] + "…"


def layers_of(entries: Sequence[Mapping[str, Any]], *, full: bool = False) -> tuple[Layer, ...]:
    """Rows newest first (as the Engine API lists them), cumulative sizes counted from the oldest."""
    sizes = [int(e.get("Size") or 0) for e in entries]
    ranked = sorted((i for i, s in enumerate(sizes) if s > 0), key=lambda i: (-sizes[i], i))[:LARGEST]
    cumulative = [0] * len(entries)
    running = 0
    for i in range(len(entries) - 1, -1, -1):
        running += sizes[i]
        cumulative[i] = running
    return tuple(
        Layer(sizes[i], cumulative[i], instruction(e, full=full), i in ranked) for i, e in enumerate(entries)
    )


def table(result: HistoryResult) -> list[str]:
    """The printed view: header, one row per layer, the total."""
    rows = [f"{result.ref} ({short(result.image_id)}), newest layer first:",
            f"  {'SIZE':>9}  {'CUMULATIVE':>10}  INSTRUCTION"]
    for layer in result.layers:
        mark = MARK if layer.largest else " "
        rows.append(f"{mark} {human_size(layer.size):>9}  {human_size(layer.cumulative):>10}  {layer.instruction}")
    count = sum(1 for layer in result.layers if layer.largest)
    rows.append(f"total {human_size(result.total)} in {len(result.layers)} layers ({MARK} = the {count} largest)")
    return rows


def history(settings: Settings, engine: Engine, name: str, *, full: bool = False) -> HistoryResult:
    """Print the mission image's layer table.

    Raises:
        ImageNotFound: the mission image does not exist.
        EngineUnavailable: the daemon cannot be reached.
    """
    ref = mission_spec(settings, settings.deployment(name)).ref
    image = engine.require(ref, f"run `doit build:{name}` first")
    result = HistoryResult(name, ref, image.id, layers_of(engine.history(image.id), full=full))
    for row in table(result):
        log.info("%s", row)
    return result

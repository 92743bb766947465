"""Small result dataclasses shared by the stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageResult:
    task: str
    ref: str
    image_id: str
    inputs: str
    built: bool
    seconds: float
    size: int = 0
    previous_size: int = 0  # of the image the tag pointed to before this build (0: none)
    source: str = "built"  # built | cache | current

    def values(self) -> dict[str, Any]:
        """What the doit task saves (readable by later tasks through getargs)."""
        return {
            "image": self.image_id,
            "ref": self.ref,
            "inputs": self.inputs,
            "built": self.built,
            "size": self.size,
            "previous_size": self.previous_size,
            "source": self.source,
        }


@dataclass(frozen=True)
class FileResult:
    path: str
    digest: str
    changed: bool

    def values(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "changed": self.changed}


@dataclass(frozen=True)
class Freshness:
    """Whether a stage's output is current and, in plain words, why (not)."""

    current: bool
    reason: str
    # The separate reasons behind ``reason`` when there are several (e.g. one per changed file),
    # so the run output can name the first few and count the rest.
    reasons: tuple[str, ...] = ()

    def parts(self) -> tuple[str, ...]:
        return self.reasons or (self.reason,)

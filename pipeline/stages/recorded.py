"""The mission image and the record a stage keeps of its last run on it (test, freeze, drift)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import records
from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Deployment, Settings
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo


def image_and_record(settings: Settings, engine: Engine, dep: Deployment, path: Path,
                     what: str) -> tuple[ImageInfo, dict[str, Any]] | Freshness:
    """The deployment's mission image and the record at ``path`` of the last ``what`` of an image.

    Returns a stale :class:`Freshness` instead when the image is missing or nothing is recorded.
    """
    ref = mission_spec(settings, dep).ref
    image = engine.image(ref)
    if image is None:
        return Freshness(False, f"image {ref} is missing")
    last = records.load(path)
    if last is None:
        return Freshness(False, f"no {what} of image {short(image.id)} recorded in {display(path)}")
    return image, last

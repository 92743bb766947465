"""Crosslinking: hard-link duplicate files of an image, on the export stream, into a one-layer image.

``crosslink:NAME`` makes ``NAMESPACE/squash-NAME:crosslinked``: the mission
image's file system exported, duplicates linked on the way and imported as one
layer with the source's configuration (see :mod:`pipeline.stages.relink`), plus
the label ``pipeline.crosslink`` = ``{"source": ID, "paths": [...]}``: the image it
was made from and the directories it linked under.  It is current while that label
names the image the mission tag holds and the paths asked for now (``--paths``, or
the defaults).  Nothing runs inside the image.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.keys import short
from pipeline.settings import Settings
from pipeline.stages.relink import json_label, link_paths, relink_image, scan
from pipeline.stages.results import Freshness

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

LABEL_CROSSLINK = "pipeline.crosslink"


@dataclass(frozen=True)
class CrosslinkResult:
    deployment: str
    ref: str  # NAMESPACE/squash-NAME:crosslinked
    image_id: str
    source_id: str
    files_linked: int
    bytes_saved: int
    seconds: float
    made: bool  # False: the tagged intermediate was current

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "source": self.source_id, "files_linked": self.files_linked,
                "bytes_saved": self.bytes_saved, "seconds": round(self.seconds, 3), "made": self.made}


def squash_repo(settings: Settings, name: str) -> str:
    """NAMESPACE/squash-NAME: the repository of a deployment's squash intermediates."""
    return f"{settings.namespace}/squash-{name}"


def crosslinked_ref(settings: Settings, name: str) -> str:
    return f"{squash_repo(settings, name)}:crosslinked"


def crosslink_label(source: ImageInfo, paths: Sequence[str] = ()) -> str:
    """The ``pipeline.crosslink`` label of an image crosslinked from ``source`` under ``paths``."""
    return json.dumps({"source": source.id, "paths": link_paths(paths)}, sort_keys=True)


def crosslink_freshness(settings: Settings, engine: Engine, source: ImageInfo, name: str,
                        paths: Sequence[str] = ()) -> Freshness:
    """Current while NAMESPACE/squash-NAME:crosslinked was made from ``source``, linking under ``paths``."""
    ref = crosslinked_ref(settings, name)
    have = engine.image(ref)
    if have is None:
        return Freshness(False, f"image {ref} is missing")
    made = json_label(have, LABEL_CROSSLINK)  # an older plain-ID label reads as {}: never current
    made_from = str(made.get("source") or "")
    if made_from != source.id:
        return Freshness(False, f"{ref} was made from {short(made_from) or 'an unknown image'}, "
                                f"the mission image is now {short(source.id)}")
    if made.get("paths") != link_paths(paths):
        return Freshness(False, f"{ref} linked under {','.join(made.get('paths') or ['(unknown)'])}, "
                                f"now asked for {','.join(link_paths(paths))}")
    return Freshness(True, f"{ref} ({short(have.id)}) is current for {short(source.id)} "
                           f"under {','.join(link_paths(paths))}")


def crosslink_image(settings: Settings, engine: Engine, name: str, source: ImageInfo,
                    paths: Sequence[str] = (), *, dry_run: bool = False) -> CrosslinkResult:
    """Hard-link duplicates under ``paths`` (default: :data:`pipeline.stages.relink.DEFAULT_PATHS`) of ``source``.

    The result is tagged NAMESPACE/squash-NAME:crosslinked, unless that image is
    already current; ``dry_run`` only counts what would be linked.

    Raises:
        PipelineError: the export stream is corrupt or truncated, the import failed or
            did not store what was sent; nothing is tagged.
    """
    started = time.monotonic()
    ref = crosslinked_ref(settings, name)
    what = f"crosslink:{name}"
    if dry_run:
        counts = scan(settings, engine, what, source, paths).counts
        log.info("%s: %d files would be linked, %d bytes saved", what, counts.files_linked, counts.bytes_saved)
        return CrosslinkResult(name, "", "", source.id, counts.files_linked, counts.bytes_saved,
                               time.monotonic() - started, False)
    fresh = crosslink_freshness(settings, engine, source, name, paths)
    if fresh.current:
        have = engine.require(ref, "it vanished while checking")
        log.info("%s: %s", what, fresh.reason)
        return CrosslinkResult(name, ref, have.id, source.id, 0, 0, 0.0, False)
    made = relink_image(settings, engine, what, source, paths, {LABEL_CROSSLINK: crosslink_label(source, paths)})
    try:
        engine.tag(made.image_id, ref)
    except BaseException:
        engine.remove_image(made.image_id)
        raise
    seconds = time.monotonic() - started
    log.info("%s: %d files linked, %d bytes saved; tagged %s (%s) in %.1f s", what, made.counts.files_linked,
             made.counts.bytes_saved, ref, short(made.image_id), seconds)
    return CrosslinkResult(name, ref, made.image_id, source.id, made.counts.files_linked, made.counts.bytes_saved,
                           seconds, True)

"""Is an image stage current?  The check side of pipeline/stages/images.py, light enough for every no-op.

A no-op asks, per image stage: the tagged image's ``pipeline.inputs`` label,
and whether the stat memo recalls the same key (nothing the key was computed
from changed).  Only when the memo cannot vouch for the key is it computed
again, by the Dockerfile model and the context collector (images.py), which
are imported then and not before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import keystore, statmemo, tagging
from pipeline.hashing import FileHasher, sha256_text
from pipeline.keys import KEY_VERSION, InputKey, explain, short
from pipeline.plan import LABEL_INPUTS, ImageSpec
from pipeline.render import read_sources, render
from pipeline.settings import Settings
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

# The modules whose code decides a key: a change to any of them (an upgrade) recomputes every key.
MODEL_MODULES = ("keys", "render", "plan", "hashing", "stages/images", "stages/image_check", "buildctx/collect",
                 "buildctx/ignore", "dockerfile/parser", "dockerfile/shell", "dockerfile/analysis")


def rendered_text(settings: Settings, spec: ImageSpec) -> tuple[str, dict[str, str]]:
    """The Dockerfile text to build and the digest of each source part (for explanations)."""
    parts = read_sources(spec.sources)
    sources = {display_rel(settings, path): sha256_text(body) for path, body in parts}
    return render(parts, buildkit=settings.buildkit, mounts=settings.cache_mounts), sources


def display_rel(settings: Settings, path: Path) -> str:
    try:
        return str(path.relative_to(settings.deployments_dir))
    except ValueError:
        return display(path)


def memo_fingerprint(settings: Settings, spec: ImageSpec) -> str:
    """Everything besides files and images that the key reads (images.plan_build); the stat memo is keyed on it."""
    return sha256_text(repr((KEY_VERSION, spec, settings.buildkit, str(settings.deployments_dir), os.getcwd(),
                             statmemo.code_stamps(MODEL_MODULES))))


def recalled_key(settings: Settings, engine: Engine, spec: ImageSpec) -> str | None:
    """The key digest recorded with the stat data of the stage's inputs, if none of them changed since."""
    def image_id(ref: str) -> str | None:
        info = engine.image(ref)
        return info.id if info is not None else None

    return statmemo.for_build_dir(settings.build_dir).recall(spec.task, memo_fingerprint(settings, spec), image_id)


def image_freshness(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> Freshness:
    """Compare the tagged image's ``pipeline.inputs`` label with the current key.

    Raises:
        ImageNotFound, ConfigError: as :func:`pipeline.stages.images.plan_build`, when the key is computed.
    """
    image = engine.image(spec.ref)
    if image is None:
        return Freshness(False, f"image {spec.ref} is missing")
    have = image.labels.get(LABEL_INPUTS)
    if have and recalled_key(settings, engine, spec) == have:
        # Nothing the key was computed from changed (stat data and image IDs): no parse, no hashing.
        key = InputKey(have, {})
    else:
        from pipeline.stages.images import current_key

        key = current_key(settings, engine, spec, hasher)
    fresh = compare(settings, spec.task, image, key)
    if fresh.current:
        untagged = [ref for ref in extra_refs(settings, spec, key.digest) if not tagged(engine, ref, image.id)]
        if untagged:
            more = f" and {len(untagged) - 1} more" if len(untagged) > 1 else ""
            return Freshness(False, f"extra tag {untagged[0]}{more} is not on {short(image.id)} yet (a retag, "
                                    "no rebuild)")
    return fresh


def extra_refs(settings: Settings, spec: ImageSpec, key: str) -> list[str]:
    """The references the stage's image is also tagged with now (its ``tags``/``tags.extra`` templates).

    Raises:
        PipelineError: a template uses {commit} outside a git checkout.
    """
    return [tagging.render(t, repository=spec.repository, environment=settings.environment, key=key,
                           root=settings.deployments_dir) for t in spec.extra_tags]


def tagged(engine: Engine, ref: str, image_id: str) -> bool:
    """Whether ``ref`` names ``image_id`` now."""
    info = engine.image(ref)
    return info is not None and info.id == image_id


def compare(settings: Settings, task: str, image: ImageInfo, key: InputKey) -> Freshness:
    """Current when the image's label is the key; otherwise what changed, in doit info's words."""
    have = image.labels.get(LABEL_INPUTS)
    if have == key.digest:
        source = keystore.load_source(settings.build_dir, task, have)
        how = {"cache": "; pulled from cache", "built": "; built here"}.get(source or "", "")
        return Freshness(True, f"{image.tags[0] if image.tags else image.id} is current ({short(key.digest)}{how})")
    if not have:
        return Freshness(False, f"image {image.tags[0] if image.tags else image.id} has no {LABEL_INPUTS} label")
    previous = keystore.load_parts(settings.build_dir, task, have)
    return Freshness(False, "; ".join(explain(previous, key.parts)), tuple(explain(previous, key.parts, limit=10_000)))

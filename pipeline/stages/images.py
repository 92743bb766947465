"""Chain layers and mission images: Dockerfile builds keyed on their inputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import keystore
from pipeline.cache import stage_cache
from pipeline.config import Settings
from pipeline.engine import BuildRequest, Engine, ImageInfo, find_buildkit_cli
from pipeline.errors import BuildFailed
from pipeline.files import write_text
from pipeline.hashing import FileHasher, sha256_text
from pipeline.keys import PIPELINE_ARGS, InputKey, declared_args, explain, image_key, parse, short
from pipeline.plan import LABEL_INPUTS, ImageSpec
from pipeline.render import read_sources, render
from pipeline.stages.results import Freshness, ImageResult
from pipeline.yamlfile import display

log = logging.getLogger(__name__)


def rendered_text(settings: Settings, spec: ImageSpec) -> tuple[str, dict[str, str]]:
    """The Dockerfile text to build and the digest of each source part (for explanations)."""
    parts = read_sources(spec.sources)
    sources = {display_rel(settings, path): sha256_text(body) for path, body in parts}
    return render(parts, buildkit=settings.buildkit), sources


def display_rel(settings: Settings, path: Path) -> str:
    try:
        return str(path.relative_to(settings.deployments_dir))
    except ValueError:
        return display(path)


def current_key(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> InputKey:
    """The input key the stage's image must carry to be current.

    Raises:
        ImageNotFound: the parent image does not exist yet.
        ConfigError: a Dockerfile or context file cannot be read.
    """
    parent = engine.require(spec.parent_ref, f"run `doit {spec.parent_task}` first")
    text, sources = rendered_text(settings, spec)
    return image_key(
        rendered=text,
        sources=sources,
        context=spec.context,
        buildargs=spec.buildargs,
        parent_id=parent.id,
        hasher=hasher,
    )


def freshness(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> Freshness:
    """Compare the tagged image's ``pipeline.inputs`` label with the current key."""
    image = engine.image(spec.ref)
    if image is None:
        return Freshness(False, f"image {spec.ref} is missing")
    return compare(settings, spec.task, image, current_key(settings, engine, spec, hasher))


def compare(settings: Settings, task: str, image: ImageInfo, key: InputKey) -> Freshness:
    have = image.labels.get(LABEL_INPUTS)
    if have == key.digest:
        source = keystore.load_source(settings.build_dir, task, have)
        how = {"cache": "; pulled from cache", "built": "; built here"}.get(source or "", "")
        return Freshness(True, f"{image.tags[0] if image.tags else image.id} is current ({short(key.digest)}{how})")
    if not have:
        return Freshness(False, f"image {image.tags[0] if image.tags else image.id} has no {LABEL_INPUTS} label")
    previous = keystore.load_parts(settings.build_dir, task, have)
    return Freshness(False, "; ".join(explain(previous, key.parts)), tuple(explain(previous, key.parts, limit=10_000)))


def build_image(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> ImageResult:
    """Build and tag the stage's image unless its tagged image already carries the current key.

    The image is built untagged and tagged only after it is verified, so an
    interrupted or failed build never moves the tag.

    Raises:
        ImageNotFound: the parent is missing.
        BuildFailed: the build failed (failing step and output tail in the message).
        EngineUnavailable: the daemon went away.
    """
    key = current_key(settings, engine, spec, hasher)

    def make() -> str:
        text, _ = rendered_text(settings, spec)
        write_text(spec.rendered_path, text)
        # Pass only the args the Dockerfile declares: the others would only draw a warning.
        declared = declared_args(parse(text, spec.buildargs))
        buildargs = {k: v for k, v in spec.buildargs.items() if k in declared}
        for unused in sorted(set(spec.buildargs) - declared - set(PIPELINE_ARGS)):
            log.warning("%s: build arg %s is configured but the Dockerfile declares no ARG %s; ignored",
                        spec.task, unused, unused)
        log.info("%s: building %s from %s", spec.task, spec.ref, display(spec.rendered_path))
        request = BuildRequest(spec.task, spec.context, spec.rendered_path, buildargs, spec.labels(settings, key.digest))
        return engine.build(request, buildkit_cli=find_buildkit_cli() if settings.buildkit else None)

    return produce(settings, engine, spec.task, spec.ref, key, make)


def produce(
    settings: Settings, engine: Engine, task: str, ref: str, key: InputKey, make: Callable[[], str]
) -> ImageResult:
    """Make ``ref`` carry an image with ``key``: keep the current one, pull it from the stage cache, or ``make()`` it.

    ``make`` returns an untagged image ID; the tag moves only once the image's
    label is verified, and a built image is offered to the stage cache.

    Raises:
        BuildFailed: the made image lacks the key's label.
    """
    started = time.monotonic()
    existing = engine.image(ref)
    previous_size = existing.size if existing else 0
    if existing is not None and existing.labels.get(LABEL_INPUTS) == key.digest:
        log.info("%s: %s already carries the current inputs; not building", task, ref)
        keystore.save(settings.build_dir, task, key, keystore.load_source(settings.build_dir, task, key.digest))
        return ImageResult(task, ref, existing.id, key.digest, False, 0.0, existing.size, previous_size, "current")
    cache = stage_cache(settings, engine)
    cached = cache.fetch(task, key, ref) if cache else None
    if cached is not None:
        keystore.save(settings.build_dir, task, key, "cache")
        seconds = time.monotonic() - started
        return ImageResult(task, ref, cached.id, key.digest, True, seconds, cached.size, previous_size, "cache")
    image_id = make()
    made = engine.require(image_id, "the build reported an image that does not exist")
    if made.labels.get(LABEL_INPUTS) != key.digest:
        raise BuildFailed(f"{task}: built image {short(image_id)} lacks the {LABEL_INPUTS} label; tag not moved")
    engine.tag(image_id, ref)
    keystore.save(settings.build_dir, task, key, "built")
    if cache:
        cache.store(task, key, image_id)
    seconds = time.monotonic() - started
    log.info("%s: tagged %s (%s) in %.1f s", task, ref, short(image_id), seconds)
    return ImageResult(task, ref, image_id, key.digest, True, seconds, made.size, previous_size, "built")

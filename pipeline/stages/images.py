"""Chain layers and mission images: Dockerfile builds keyed on their inputs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline import keystore
from pipeline.config import Settings
from pipeline.engine import BuildRequest, Engine, ImageInfo, find_buildkit_cli
from pipeline.errors import BuildFailed
from pipeline.files import write_text
from pipeline.hashing import FileHasher, sha256_text
from pipeline.keys import InputKey, declared_args, explain, image_key, parse, short
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
        return Freshness(True, f"{image.tags[0] if image.tags else image.id} is current ({short(key.digest)})")
    if not have:
        return Freshness(False, f"image {image.tags[0] if image.tags else image.id} has no {LABEL_INPUTS} label")
    previous = keystore.load_parts(settings.build_dir, task, have)
    return Freshness(False, "; ".join(explain(previous, key.parts)))


def build_image(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> ImageResult:
    """Build and tag the stage's image unless its tagged image already carries the current key.

    The image is built untagged and tagged only after it is verified, so an
    interrupted or failed build never moves the tag.

    Raises:
        ImageNotFound: the parent is missing.
        BuildFailed: the build failed (failing step and output tail in the message).
        EngineUnavailable: the daemon went away.
    """
    started = time.monotonic()
    key = current_key(settings, engine, spec, hasher)
    existing = engine.image(spec.ref)
    if existing is not None and existing.labels.get(LABEL_INPUTS) == key.digest:
        log.info("%s: %s already carries the current inputs; not building", spec.task, spec.ref)
        keystore.save(settings.build_dir, spec.task, key)
        return ImageResult(spec.task, spec.ref, existing.id, key.digest, False, 0.0, existing.size)
    text, _ = rendered_text(settings, spec)
    write_text(spec.rendered_path, text)
    labels = spec.labels(settings, key.digest)
    # Pass only the args the Dockerfile declares: the others would only draw a warning.
    declared = declared_args(parse(text, spec.buildargs))
    buildargs = {k: v for k, v in spec.buildargs.items() if k in declared}
    for unused in sorted(set(spec.buildargs) - declared - {"BASE_IMAGE", "USE_FROZEN"}):
        log.warning("%s: build arg %s is configured but the Dockerfile declares no ARG %s; ignored", spec.task, unused, unused)
    log.info("%s: building %s from %s", spec.task, spec.ref, display(spec.rendered_path))
    request = BuildRequest(spec.task, spec.context, spec.rendered_path, buildargs, labels)
    image_id = engine.build(request, buildkit_cli=find_buildkit_cli() if settings.buildkit else None)
    built = engine.require(image_id, "the build reported an image that does not exist")
    if built.labels.get(LABEL_INPUTS) != key.digest:
        raise BuildFailed(f"{spec.task}: built image {short(image_id)} lacks the {LABEL_INPUTS} label; tag not moved")
    engine.tag(image_id, spec.ref)
    keystore.save(settings.build_dir, spec.task, key)
    seconds = time.monotonic() - started
    log.info("%s: tagged %s (%s) in %.1f s", spec.task, spec.ref, short(image_id), seconds)
    return ImageResult(
        spec.task, spec.ref, image_id, key.digest, True, seconds, built.size, existing.size if existing else 0
    )

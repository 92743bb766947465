"""The dockerfile stage: write the mission image's rendered Dockerfile under build/."""

from __future__ import annotations

import logging

from pipeline.files import write_text
from pipeline.hashing import sha256_text
from pipeline.plan import ImageSpec
from pipeline.settings import Settings
from pipeline.stages.image_check import rendered_text
from pipeline.stages.results import FileResult, Freshness
from pipeline.yamlfile import display

log = logging.getLogger(__name__)


def dockerfile_freshness(settings: Settings, spec: ImageSpec) -> Freshness:
    text, _ = rendered_text(settings, spec)
    try:
        if spec.rendered_path.read_text(encoding="utf-8") == text:
            return Freshness(True, f"{display(spec.rendered_path)} is current")
    except OSError:
        return Freshness(False, f"{display(spec.rendered_path)} is missing")
    return Freshness(False, f"{' + '.join(display(p) for p in spec.sources)} changed since {display(spec.rendered_path)} was written")


def write_dockerfile(settings: Settings, spec: ImageSpec) -> FileResult:
    """Render Dockerfile(.custom) + trailer (+ BuildKit cache mounts) to build/dockerfiles/NAME.Dockerfile.

    The model checks the text first, so a construct the key cannot cover is
    refused here, with its ``file:line``, before any image is built.

    Raises:
        ConfigError: a source part is missing or unreadable, or the model refuses it.
    """
    from pipeline.stages.images import check_model  # the Dockerfile model: only when writing

    text, _ = rendered_text(settings, spec)
    check_model(settings, spec, text)
    changed = write_text(spec.rendered_path, text)
    log.info("dockerfile:%s: %s %s", spec.deployment, "wrote" if changed else "kept", display(spec.rendered_path))
    return FileResult(str(spec.rendered_path), sha256_text(text), changed)

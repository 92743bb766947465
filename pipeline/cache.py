"""The registry as a stage cache shared between CI runners (``cache:`` in pipeline.yaml).

After a stage builds an image it is pushed to ``HOST/CACHE_REPO:STAGE-KEY``.
A stale stage first looks that tag up with one manifest HEAD; on a hit it pulls
the image and uses it when it carries the same ``pipeline.inputs`` label.
Any cache trouble (registry down, bad entry) is a warning and the stage is
built locally: the cache can make a run faster, never make it fail.
"""

from __future__ import annotations

import logging
import re

from pipeline import cache_trust
from pipeline.engine import Engine, ImageInfo
from pipeline.errors import PipelineError
from pipeline.keys import InputKey, short
from pipeline.plan import LABEL_INPUTS
from pipeline.registry.backend import backend_for
from pipeline.settings import Settings

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class StageCache:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        assert settings.cache is not None
        self.settings = settings
        self.cache = settings.cache
        self.registry = settings.registry
        self.engine = engine

    def tag(self, task: str, key: InputKey) -> str:
        digest = key.digest.split(":", 1)[-1]
        return f"{_UNSAFE.sub('-', task)}-{digest}"

    def ref(self, task: str, key: InputKey) -> str:
        return f"{self.registry.host}/{self.cache.repo}:{self.tag(task, key)}"

    def fetch(self, task: str, key: InputKey, stage_ref: str) -> ImageInfo | None:
        """Pull the cached image for these inputs and tag it ``stage_ref``.

        Returns None (and tags nothing) on a miss, a rejected entry or any trouble.
        """
        if not self.cache.pull:
            return None
        ref = self.ref(task, key)
        backend = backend_for(self.registry)
        try:
            if backend.http.quick().manifest_digest(self.cache.repo, self.tag(task, key)) is None:
                log.info("%s: cache miss (%s)", task, ref)
                return None
            pull_ref = cache_trust.trusted_ref(self, backend, task, key, ref)  # ref itself without cache.trust
            if pull_ref is None:
                return None
            creds = backend.credentials
            image = self.engine.pull(pull_ref, creds.auth_config() if creds else None)
        except PipelineError as exc:
            log.warning("%s: WARNING: the stage cache is unavailable (%s); building locally", task, exc)
            return None
        have = image.labels.get(LABEL_INPUTS)
        if have != key.digest:
            self._forget(ref)
            log.warning("%s: WARNING: cache entry %s carries inputs %s, not %s: rejected; building locally",
                        task, ref, short(have), short(key.digest))
            return None
        try:
            self.engine.tag(image.id, stage_ref)
        finally:
            self._forget(ref)
        log.info("%s: pulled from cache %s (%s)", task, ref, short(image.id))
        return image

    def store(self, task: str, key: InputKey, image_id: str) -> None:
        """Push a freshly built (and already stage-tagged) image to the cache; trouble is only a warning."""
        if not self.cache.push:
            return
        ref = self.ref(task, key)
        backend = backend_for(self.registry)
        try:
            self.engine.tag(image_id, ref)
            creds = backend.credentials
            digest = self.engine.push(ref, creds.auth_config() if creds else None)
            log.info("%s: stored in cache %s (%s)", task, ref, short(digest))
            cache_trust.sign_entry(self, backend, task, key, digest)
        except PipelineError as exc:
            log.warning("%s: WARNING: could not store the image in the stage cache (%s)", task, exc)
        finally:
            self._forget(ref)

    def _forget(self, ref: str) -> None:
        """Drop the local cache tag: the stage's own tag is what the pipeline uses."""
        try:
            self.engine.untag(ref)
        except PipelineError:
            pass


def stage_cache(settings: Settings, engine: Engine) -> StageCache | None:
    return StageCache(settings, engine) if settings.cache else None

"""The registry as a stage cache shared between CI runners (``cache:`` in pipeline.yaml).

After a stage builds an image it is pushed to ``HOST/CACHE_REPO:STAGE-KEY``.
A stale stage first looks that tag up with one manifest HEAD; on a hit it pulls
the image and uses it when it carries the same ``pipeline.inputs`` label.
Any cache trouble (registry down, bad entry) is a warning and the stage is
built locally: the cache can make a run faster, never make it fail.

The first use in a run asks the registry for ``/v2/`` with the cache's own
short timeouts (``cache.connect_timeout``, ``cache.timeout``).  After the first
failure the cache is **unavailable for the rest of the run** (this process):
one warning, no more lookups or pushes, and the summary says it was skipped.
A registry that accepts connections and never answers so costs one timeout,
not two per stage.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING

from pipeline import cache_trust
from pipeline.errors import PipelineError
from pipeline.keys import InputKey, short
from pipeline.plan import LABEL_INPUTS
from pipeline.registry.backend import backend_for
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_lock = threading.Lock()
# Per process (a run; with `-P process` each worker finds out once): "HOST/REPO" -> whether it answered.
_reachable: dict[str, bool] = {}
_skipped: dict[str, str] = {}  # "HOST/REPO" -> why the cache was skipped for the rest of the run
_avoided: dict[str, int] = {}  # "HOST/REPO" -> lookups and pushes not made since


def skipped() -> list[str]:
    """One line per stage cache that this run stopped using, for the summary."""
    return [f"stage cache {where}: skipped for the rest of this run after: {why} "
            f"({_avoided.get(where, 0)} lookups/pushes not made; those stages were built locally)"
            for where, why in _skipped.items()]


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

    @property
    def where(self) -> str:
        return f"{self.registry.host}/{self.cache.repo}"

    def _timeouts(self) -> tuple[float, float]:
        return (self.cache.connect_timeout, self.cache.timeout)

    def _usable(self, task: str) -> bool:
        """False once the cache failed in this run; the first call checks that the registry answers."""
        with _lock:
            if self.where in _skipped:
                _avoided[self.where] = _avoided.get(self.where, 0) + 1
                log.debug("%s: the stage cache was skipped for this run", task)
                return False
            if _reachable.get(self.where):
                return True
            try:
                backend_for(self.registry).http.quick(self._timeouts()).ping()
            except PipelineError as exc:
                self._give_up(task, str(exc))
                return False
            _reachable[self.where] = True
            return True

    def _give_up(self, task: str, why: str) -> None:
        """Stop using the cache for the rest of the run, with one warning for the whole run."""
        if self.where in _skipped:
            return
        _skipped[self.where] = why
        log.warning("%s: WARNING: the stage cache %s is unavailable (%s); this run builds locally and "
                    "makes no more cache lookups or pushes", task, self.where, why)

    def fetch(self, task: str, key: InputKey, stage_ref: str) -> ImageInfo | None:
        """Pull the cached image for these inputs and tag it ``stage_ref``.

        Returns None (and tags nothing) on a miss, a rejected entry or any trouble.
        """
        if not self.cache.pull or not self._usable(task):
            return None
        ref = self.ref(task, key)
        backend = backend_for(self.registry)
        try:
            if backend.http.quick(self._timeouts()).manifest_digest(self.cache.repo, self.tag(task, key)) is None:
                log.info("%s: cache miss (%s)", task, ref)
                return None
            pull_ref = cache_trust.trusted_ref(self, backend, task, key, ref)  # ref itself without cache.trust
            if pull_ref is None:
                return None
            creds = backend.credentials
            image = self.engine.pull(pull_ref, creds.auth_config() if creds else None)
        except PipelineError as exc:
            with _lock:
                self._give_up(task, str(exc))
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
        if not self.cache.push or not self._usable(task):
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
            with _lock:
                self._give_up(task, f"could not store {ref}: {exc}")
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

"""The per-process pipeline context: configuration loaded once, a lazy engine, the hash cache.

The up-to-date checks get their own context (:func:`checks`): the same settings
and hash cache, with a :class:`~pipeline.engine_probe.CheckEngine` that looks each image
up once per snapshot, over the engine's socket, without the docker SDK.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from doit import get_var
from doit.exceptions import InvalidDodoFile

from pipeline import config
from pipeline.engine_probe import CheckEngine
from pipeline.errors import ConfigError
from pipeline.hashing import FileHasher
from pipeline.parents import check_parents
from pipeline.plan import ImageSpec, chain_specs, mission_spec
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.engine import Engine


class Context:
    """The loaded settings, the hash cache, and an engine made on first use (a no-op never makes one)."""

    def __init__(self, settings: Settings, hasher: FileHasher, engine: Engine | None = None) -> None:
        self.settings = settings
        self.hasher = hasher
        self._engine = engine
        # Every task of a deployment asks for its spec (30 deployments: ~1 000 times per doit start).
        self._layers: dict[str, ImageSpec] | None = None
        self._missions: dict[str, ImageSpec] = {}

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from pipeline.engine.client import Engine  # the SDK wrapper: only when a stage action runs

            self._engine = Engine()
        return self._engine

    def layer(self, task: str) -> ImageSpec:
        if self._layers is None:
            self._layers = {spec.task: spec for spec in chain_specs(self.settings)}
        return self._layers[task]

    def mission(self, deployment: str) -> ImageSpec:
        spec = self._missions.get(deployment)
        if spec is None:
            spec = self._missions[deployment] = mission_spec(self.settings, self.settings.deployment(deployment))
        return spec


_context: Context | None = None
_checks: Context | None = None
_pid = os.getpid()


def deployments_dir() -> Path:
    """deployments/ below doit's working directory, or PIPELINE_DEPLOYMENTS_DIR."""
    return Path(os.environ.get("PIPELINE_DEPLOYMENTS_DIR") or "deployments").resolve()


def get() -> Context:
    """Load the configuration once per process.

    Raises:
        InvalidDodoFile: the configuration is invalid; doit prints the one-line
            message (no traceback) and exits 3.
    """
    global _context, _checks, _pid
    if _context is not None and _pid != os.getpid():
        # A `doit -n N -P process` worker: never share the parent's daemon connections across fork.
        _context = Context(_context.settings, FileHasher(_context.hasher.cache_file))
        _checks = None
        _pid = os.getpid()
    if _context is None:
        doit_vars = {key: get_var(key, None) for key in config.OVERRIDE_KEYS}
        try:
            settings = config.load(deployments_dir(), config.collect_overrides(doit_vars), Path("build"))
            check_parents(settings)  # a FROM that ignores the parent stops the run before any build
        except ConfigError as exc:
            raise InvalidDodoFile(str(exc)) from None
        _context = Context(settings, FileHasher(settings.build_dir / "cache" / "file-hashes.json"))
    return _context


def checks() -> Context:
    """The context the up-to-date checks use: read-only image lookups without the SDK (see engine_probe).

    Raises:
        InvalidDodoFile: as :func:`get`.
    """
    global _checks
    ctx = get()
    if _checks is None:
        _checks = Context(ctx.settings, ctx.hasher, CheckEngine())
    return _checks

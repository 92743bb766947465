"""The certs stage: copy the host CA trust bundle into the build context of the certs layer."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.files import GENERATED_MODE, has_generated_mode, write_bytes
from pipeline.hashing import sha256_bytes
from pipeline.settings import Settings
from pipeline.stages.results import FileResult, Freshness
from pipeline.yamlfile import display

log = logging.getLogger(__name__)

# Where distributions keep the combined trust bundle (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine).
HOST_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
    Path("/etc/pki/tls/certs/ca-bundle.crt"),
    Path("/etc/ssl/ca-bundle.pem"),
    Path("/etc/ssl/cert.pem"),
)


def source_path(settings: Settings, candidates: tuple[Path, ...] = HOST_BUNDLES) -> Path:
    """The bundle to copy: ``certs.source`` or, for ``auto``, the first host bundle found.

    Raises:
        ConfigError: ``auto`` found no host bundle.
    """
    if settings.certs.source != "auto":
        return Path(settings.certs.source)
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        "certs.source is auto but no host CA bundle exists at "
        + ", ".join(str(p) for p in candidates)
        + "; install ca-certificates or set certs.source to a PEM file"
    )


def read_source(settings: Settings) -> tuple[Path, bytes]:
    path = source_path(settings)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"certs.source {path}: cannot read: {exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"certs.source {path}: not a PEM certificate bundle (no BEGIN CERTIFICATE line)")
    return path, data


def certs_freshness(settings: Settings) -> Freshness:
    """Whether ``certs.target`` already holds the source bundle's bytes, and why not."""
    path, data = read_source(settings)
    target = settings.certs.target
    try:
        current = target.read_bytes() == data
    except OSError:
        return Freshness(False, f"{display(target)} is missing")
    if current and not has_generated_mode(target):
        mode = oct(target.stat().st_mode & 0o777)
        return Freshness(False, f"{display(target)} has mode {mode}, not {oct(GENERATED_MODE)}: the layer's key would differ")
    if current:
        return Freshness(True, f"{display(target)} matches {path}")
    return Freshness(False, f"CA bundle {path} changed ({display(target)} differs)")


def write_certs(settings: Settings) -> FileResult:
    """Copy the CA bundle to ``certs.target`` atomically; no write when unchanged.

    Raises:
        ConfigError: the source cannot be found or read, or is not PEM.
    """
    path, data = read_source(settings)
    changed = write_bytes(settings.certs.target, data)
    log.info("certs: %s %s from %s", "wrote" if changed else "kept", display(settings.certs.target), path)
    return FileResult(str(settings.certs.target), sha256_bytes(data), changed)

"""The verify stage, and the gate of promote and release: is this image what its signed provenance says?

For a tag or digest in the deployment's repository:

1. fetch its attestations (exit 2 when that cannot be done);
2. check each envelope's signature against ``sign.public_keys``, the statement's
   subject against the image's digest, and the attested input key against the
   image's ``pipeline.inputs`` label (exit 1 when any of that fails);
3. compare the attested inputs with this checkout, in ``doit info``'s words.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import provenance, records, signing
from pipeline.errors import AttestationsUnavailable, ImageNotFound, PipelineError, RegistryError, VerificationFailed
from pipeline.hashing import FileHasher
from pipeline.keys import InputKey, explain, short
from pipeline.plan import LABEL_INPUTS, mission_spec
from pipeline.provenance import open_provenance
from pipeline.registry import referrers
from pipeline.registry.backend import backend_for
from pipeline.settings import Deployment, Settings
from pipeline.stages.results import Freshness

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """An image whose signed provenance verified."""

    reference: str
    digest: str
    key: InputKey
    signer: str
    artifacts: tuple[str, ...]
    sbom: str  # what was found of the SBOM attestation
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyResult:
    deployment: str
    reference: str
    digest: str
    differences: tuple[str, ...] = field(default_factory=tuple)

    def values(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "differences": list(self.differences)}


def record_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "verify" / f"{name}.json"


def _display(dep: Deployment, reference: str) -> str:
    return f"{dep.repository}@{reference}" if reference.startswith("sha256:") else f"{dep.repository}:{reference}"


def _sbom(artifacts: list[referrers.Artifact], digest: str, keys: list[signing.PublicKey]) -> str:
    found = [e for a in artifacts for e in a.envelopes if e.predicate_type == provenance.CYCLONEDX_BOM]
    if not found:
        return "no SBOM attestation"
    problems = []
    for envelope in found:
        try:
            opened = signing.open_envelope(envelope.data, keys)
            provenance.check_subject(opened.statement, digest, provenance.CYCLONEDX_BOM)
            count = len((opened.statement.get("predicate") or {}).get("components") or [])
            return f"signature OK, subject OK ({count} components)"
        except VerificationFailed as exc:
            problems.append(str(exc))
    raise VerificationFailed(f"SBOM attestation: {problems[0]}")


def check_image(settings: Settings, dep: Deployment, reference: str | None = None) -> Checked:
    """Signatures, subject and input key of the image at ``reference`` (default: the build tag).

    Raises:
        AttestationsUnavailable: the image or its attestations could not be fetched.
        VerificationFailed: a signature, subject or key check failed, or nothing is signed.
        ConfigError: no usable sign.public_keys.
    """
    reference = reference or dep.tag("build", settings.environment)
    where = _display(dep, reference)
    keys = signing.load_public_keys(settings.sign.public_keys, "sign.public_keys")
    backend = backend_for(dep.registry)
    try:
        manifest = referrers.image_manifest(backend, dep.repo, reference)
        if manifest is None:
            raise AttestationsUnavailable(f"registry {dep.registry.host} has no {where}; nothing to verify")
        config = referrers.image_config(backend, dep.repo, manifest)
        artifacts = referrers.fetch(backend, dep.repo, manifest.digest)
    except RegistryError as exc:
        raise AttestationsUnavailable(f"cannot fetch the attestations of {where}: {exc}") from None
    digest = manifest.digest
    opened, key, problems = open_provenance(artifacts, digest, keys)
    label = ((config.get("config") or {}).get("Labels") or {}).get(LABEL_INPUTS)
    if label != key.digest:
        raise VerificationFailed(f"{where}: its {LABEL_INPUTS} label is {short(label)} but its provenance attests "
                                 f"{short(key.digest)}")
    sbom = _sbom(artifacts, digest, keys)
    return Checked(reference, digest, key, opened.signer.label, tuple(a.digest for a in artifacts), sbom,
                   tuple(problems))


def require_signed(settings: Settings, dep: Deployment, reference: str, what: str) -> None:
    """The gate of promote and release (``sign.required``): refuse, in one line, an image without valid provenance.

    Raises:
        PipelineError: naming the image and why (AttestationsUnavailable when it could not be checked).
    """
    if not settings.sign.required:
        return
    try:
        checked = check_image(settings, dep, reference)
    except VerificationFailed as exc:
        # the boundary prefixes the task's name: "promote:NAME: refused: …", "release: refused: …"
        raise PipelineError(f"refused: {_display(dep, reference)} has no valid signed provenance: {exc}; "
                            f"run `doit attest:{dep.name}` (sign.required is true)") from None
    log.info("%s: %s has valid signed provenance (%s)", what, _display(dep, reference), checked.signer)


def _current(settings: Settings, engine: Engine, hasher: FileHasher, name: str, attested: InputKey,
             ) -> tuple[InputKey, list[str]]:
    """This checkout's key for the stage; the attested parent stands in when the local chain is not built."""
    from pipeline.keys import image_key
    from pipeline.stages.image_check import rendered_text
    from pipeline.stages.images import current_key

    spec = mission_spec(settings, settings.deployment(name))
    try:
        return current_key(settings, engine, spec, hasher), []
    except ImageNotFound:
        text, sources = rendered_text(settings, spec)
        parent = str(attested.parts.get("parent") or "")
        key = image_key(rendered=text, sources=sources, context=spec.context, buildargs=spec.buildargs,
                        parent_id=parent, hasher=hasher)
        return key, [f"parent not compared: {spec.parent_ref} is not built here"]


def _keys_fingerprint(settings: Settings) -> str:
    h = hashlib.sha256()
    for path in settings.sign.public_keys:
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(str(path).encode())
    return h.hexdigest()


def verify(settings: Settings, engine: Engine, hasher: FileHasher, name: str, reference: str | None = None,
           ) -> VerifyResult:
    """Verify the image at ``reference`` (default: the build tag) and say how it differs from this checkout.

    Raises:
        AttestationsUnavailable: could not fetch (exit 2).
        VerificationFailed: a signature, subject or key check failed (exit 1).
    """
    dep = settings.deployment(name)
    checked = check_image(settings, dep, reference)
    where = _display(dep, checked.reference)
    log.info("verify:%s: %s is %s", name, where, checked.digest)
    log.info("verify:%s: provenance: signature OK (%s), subject OK, inputs %s = the image's %s label",
             name, checked.signer, short(checked.key.digest), LABEL_INPUTS)
    log.info("verify:%s: sbom: %s", name, checked.sbom)
    for problem in checked.warnings:
        log.warning("verify:%s: WARNING: ignored an attestation that does not verify: %s", name, problem)
    current, notes = _current(settings, engine, hasher, name, checked.key)
    differences = [] if current.digest == checked.key.digest else explain(checked.key.parts, current.parts)
    for note in notes:
        log.info("verify:%s: note: %s", name, note)
    if differences:
        log.info("verify:%s: built from other inputs than this checkout:", name)
        for reason in differences:
            log.info("verify:%s:   - %s", name, reason)
    else:
        log.info("verify:%s: built from exactly this checkout (inputs %s)", name, short(current.digest))
    if reference is None:
        records.save(record_path(settings, name), {
            "digest": checked.digest, "artifacts": sorted(checked.artifacts), "keys": _keys_fingerprint(settings),
            "current": current.digest, "differences": differences,
        })
    return VerifyResult(name, where, checked.digest, tuple(differences))


def verify_freshness(settings: Settings, engine: Engine, hasher: FileHasher, name: str, reference: str = "",
                     ) -> Freshness:
    """Current when the last verification was of the digest the build tag names now, with the same
    attestations in the registry, the same trusted keys and the same checkout. ``--ref`` always runs."""
    if reference:
        return Freshness(False, "verify --ref always checks the registry")
    dep = settings.deployment(name)
    record = records.load(record_path(settings, name)) or {}
    tag = dep.tag("build", settings.environment)
    backend = backend_for(dep.registry)
    digest = backend.tag_digest(dep.repo, tag)
    if digest is None:
        return Freshness(False, f"registry {dep.registry.host} has no {dep.repository}:{tag}")
    if record.get("digest") != digest:
        return Freshness(False, f"{dep.repository}:{tag} ({short(digest)}) is not verified yet")
    if sorted(d for d, _ in referrers.locate(backend, dep.repo, digest)) != record.get("artifacts"):
        return Freshness(False, f"the attestations of {short(digest)} in the registry changed since they were verified")
    if record.get("keys") != _keys_fingerprint(settings):
        return Freshness(False, "sign.public_keys changed since the last verification")
    spec = mission_spec(settings, dep)
    from pipeline.stages.images import current_key

    if current_key(settings, engine, spec, hasher).digest != record.get("current"):
        return Freshness(False, "the checkout changed since the last verification")
    return Freshness(True, f"{dep.repository}:{tag} ({short(digest)}) verified")

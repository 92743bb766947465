"""The attest stage: signed SLSA provenance and the signed SBOM, stored in the registry next to the image.

Both are in-toto Statements v1 about the pushed manifest digest, each in a
DSSE envelope signed with ``sign.key``; they are attached to the image as one
OCI artifact (see pipeline/registry/referrers.py for where registries keep it).
The provenance carries the stage's whole input key, from build/keys/TASK.json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import keystore, provenance, records, signing
from pipeline.errors import ConfigError, RegistryError
from pipeline.hashing import sha256_bytes
from pipeline.keys import InputKey, short
from pipeline.plan import LABEL_INPUTS, mission_spec
from pipeline.provenance import build_statement
from pipeline.registry import referrers
from pipeline.registry.backend import backend_for
from pipeline.settings import Deployment, Settings
from pipeline.stages import sbom
from pipeline.stages.publish import pushed_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttestResult:
    deployment: str
    subject: str
    artifact: str
    where: str
    keyid: str

    def values(self) -> dict[str, Any]:
        return {"subject": self.subject, "artifact": self.artifact, "where": self.where, "keyid": self.keyid}


def record_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "attest" / f"{name}.json"


def _pushed(settings: Settings, engine: Engine, dep: Deployment) -> tuple[ImageInfo, str]:
    spec = mission_spec(settings, dep)
    image = engine.require(spec.ref, f"run `doit build:{dep.name}` first")
    record = pushed_record(settings, dep.name) or {}
    if record.get("image") != image.id or not record.get("digest"):
        raise ConfigError(f"image {spec.ref} ({short(image.id)}) is not pushed yet; run `doit push:{dep.name}` first")
    return image, str(record["digest"])


def _sbom_bytes(settings: Settings, name: str, image: ImageInfo, digest: str) -> bytes:
    cdx, _ = sbom.paths(settings, name)
    record = records.load(settings.build_dir / "sbom" / f"{name}.json") or {}
    try:
        data = cdx.read_bytes()
    except OSError:
        data = b""
    if record.get("image") != image.id or record.get("digest") != digest or \
            sha256_bytes(data) != record.get("files", {}).get(cdx.name):
        raise ConfigError(f"{display(cdx)} does not describe {short(digest)}; run `doit sbom:{name}` first")
    return data


def attest_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current when the registry still holds the artifact attest:NAME stored for the pushed digest, signed with
    today's key over today's SBOM."""
    dep = settings.deployment(name)
    image, digest = _pushed(settings, engine, dep)
    record = records.load(record_path(settings, name)) or {}
    if record.get("subject") != digest:
        return Freshness(False, f"{dep.repository}@{short(digest)} is not attested yet")
    keyid = signing.keyid_of(signing.load_signer(settings.sign))
    if record.get("keyid") != keyid:
        return Freshness(False, f"attested with key {str(record.get('keyid'))[:12]}, sign.key is now {keyid[:12]}")
    cdx, _ = sbom.paths(settings, name)
    try:
        if sha256_bytes(cdx.read_bytes()) != record.get("sbom"):
            return Freshness(False, f"{display(cdx)} changed since it was attested")
    except OSError:
        return Freshness(False, f"{display(cdx)} is missing")
    found = [d for d, _ in referrers.locate(backend_for(dep.registry), dep.repo, digest)]
    if record.get("artifact") not in found:
        return Freshness(False, f"the registry no longer holds the attestations of {short(digest)} that were stored")
    return Freshness(True, f"{dep.repository}@{short(digest)} is attested ({record.get('where')})")


def attest(settings: Settings, engine: Engine, name: str) -> AttestResult:
    """Sign the provenance and the SBOM of the pushed image and attach both to it in the registry.

    Raises:
        ConfigError: no sign.key, not pushed, no SBOM or no record of the inputs.
        RegistryError: the registry lost the image, refused or is unreachable.
    """
    dep = settings.deployment(name)
    spec = mission_spec(settings, dep)
    image, digest = _pushed(settings, engine, dep)
    label = image.labels.get(LABEL_INPUTS)
    parts = keystore.load_parts(settings.build_dir, spec.task, label) if label else None
    if parts is None:
        raise ConfigError(f"no record of the inputs {short(label)} of {spec.ref} in build/keys/; "
                          f"run `doit build:{name}` in this checkout")
    key = InputKey.of(parts)
    signer = signing.load_signer(settings.sign)
    if not sbom.sbom_freshness(settings, engine, name).current:
        sbom.write_sbom(settings, engine, name)  # e.g. written before the push: now with the repo digest
    bom = _sbom_bytes(settings, name, image, digest)
    backend = backend_for(dep.registry)
    subject = referrers.image_manifest(backend, dep.repo, digest)
    if subject is None:
        raise RegistryError(f"registry {dep.registry.host} has no {dep.repository}@{digest}; run `doit push:{name}`")
    statement = build_statement(settings, spec.task, key, dep.repository, digest, image.attrs.get("Created"), name)
    envelopes = [
        referrers.Envelope(provenance.SLSA_PROVENANCE, signing.seal(statement, signer)),
        referrers.Envelope(provenance.CYCLONEDX_BOM, signing.seal(
            provenance.sbom_statement(name=dep.repository, digest=digest, bom=json.loads(bom)), signer)),
    ]
    artifact = referrers.attach(backend, dep.repo, subject, envelopes)
    keyid = signing.keyid_of(signer)
    records.save(record_path(settings, name), {"subject": digest, "image": image.id, "artifact": artifact.digest,
                                               "where": artifact.where, "keyid": keyid, "sbom": sha256_bytes(bom)})
    log.info("attest:%s: signed provenance (inputs %s) and SBOM of %s@%s with key %s", name, short(key.digest),
             dep.repository, short(digest), keyid[:12])
    log.info("attest:%s: stored as %s (%s)", name, short(artifact.digest), artifact.where)
    return AttestResult(name, digest, artifact.digest, artifact.where, keyid)

"""Attestations stored next to an image, as OCI artifacts that refer to its digest.

One artifact per attested image: an OCI image manifest whose layers are DSSE
envelopes (media type ``application/vnd.dsse.envelope.v1+json``, each annotated
with its ``predicateType``), the layout cosign uses for ``cosign attest``.

Where it is found:

- registries with the OCI 1.1 referrers API: the manifest names the image as
  its ``subject`` and is listed by ``GET /v2/REPO/referrers/DIGEST``;
- registries without it (Debian's docker-registry 2.8 answers 404 there), and
  ECR through its API: under the tag ``sha256-HEX.att`` (cosign's tag schema).

Blobs always travel through the data plane (the Distribution API); with
``kind: ecr`` the manifests go through ECR's API, which is where ECR keeps them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import RegistryError
from pipeline.hashing import sha256_bytes
from pipeline.registry.backend import Backend
from pipeline.registry.http import MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Manifest

log = logging.getLogger(__name__)

DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE = "predicateType"


@dataclass(frozen=True)
class Envelope:
    predicate_type: str
    data: bytes


@dataclass(frozen=True)
class Artifact:
    """One attestation artifact found for an image: its manifest digest, where, and its envelopes."""

    digest: str
    where: str
    envelopes: tuple[Envelope, ...]


def att_tag(digest: str) -> str:
    """cosign's tag for the attestations of ``digest``: ``sha256-HEX.att``."""
    return digest.replace(":", "-") + ".att"


# -- images ------------------------------------------------------------------------------------------

def image_manifest(backend: Backend, repo: str, reference: str) -> Manifest | None:
    """The manifest at a tag or digest as the registry of record holds it (ECR: its API); None when absent."""
    if backend.ecr is not None:
        image = backend.ecr.image(repo, reference)
        if image is None:
            return None
        body = image["imageManifest"].encode()
        return Manifest(image["imageId"]["imageDigest"], image.get("imageManifestMediaType") or OCI_MANIFEST, body)
    return backend.http.manifest(repo, reference)


def image_config(backend: Backend, repo: str, manifest: Manifest) -> dict[str, Any]:
    """The image configuration blob (labels, rootfs.diff_ids) of a single-image manifest.

    Raises:
        RegistryError: an index (choose a platform's digest), or the blob is missing or corrupt.
    """
    if manifest.media_type in (MANIFEST_LIST, OCI_INDEX):
        raise RegistryError(f"{repo}@{manifest.digest} is a multi-platform index; give one platform's digest")
    digest = manifest.config_digest
    if not digest:
        raise RegistryError(f"{repo}@{manifest.digest}: the manifest names no config blob")
    try:
        return dict(json.loads(get_blob(backend, repo, digest)))
    except ValueError:
        raise RegistryError(f"{repo}@{manifest.digest}: the config blob {digest} is not JSON") from None


# -- blobs -------------------------------------------------------------------------------------------

def get_blob(backend: Backend, repo: str, digest: str) -> bytes:
    """A blob's bytes, checked against its digest.

    Raises:
        RegistryError: missing, or its content does not match the digest.
    """
    resp = backend.http._request("GET", f"{repo}/blobs/{digest}", repo, ok=(200, 404))
    if resp.status_code == 404:
        raise RegistryError(f"registry {backend.host} has no blob {digest} in {repo}")
    if sha256_bytes(resp.content) != digest:
        raise RegistryError(f"registry {backend.host}: blob {digest} in {repo} does not match its digest")
    return resp.content


def put_blob(backend: Backend, repo: str, data: bytes) -> str:
    """Upload ``data`` (monolithic: POST then PUT) unless the registry has it; returns its digest."""
    http = backend.http
    digest = sha256_bytes(data)
    if http._request("HEAD", f"{repo}/blobs/{digest}", repo, push=True, ok=(200, 404)).status_code == 200:
        return digest
    started = http._request("POST", f"{repo}/blobs/uploads/", repo, push=True, ok=(202,))
    location = started.headers.get("Location", "")
    path = location.split("/v2/", 1)[1] if "/v2/" in location else location.lstrip("/")
    separator = "&" if "?" in path else "?"
    http._request("PUT", f"{path}{separator}digest={digest}", repo, push=True, ok=(201,), data=data,
                  headers={"Content-Type": "application/octet-stream"})
    return digest


# -- attestations ------------------------------------------------------------------------------------

def attach(backend: Backend, repo: str, subject: Manifest, envelopes: list[Envelope]) -> Artifact:
    """Store ``envelopes`` as the attestation artifact of ``subject`` (replacing an earlier one); returns it.

    Raises:
        RegistryError: the registry refused or stayed unreachable.
    """
    layers = []
    for envelope in envelopes:
        digest = put_blob(backend, repo, envelope.data)
        layers.append({"mediaType": DSSE_MEDIA_TYPE, "size": len(envelope.data), "digest": digest,
                       "annotations": {COSIGN_SIGNATURE: "", PREDICATE_TYPE: envelope.predicate_type}})
    config = json.dumps({
        "architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "", "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}, "config": {},
    }, separators=(",", ":")).encode()
    config_digest = put_blob(backend, repo, config)
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "size": len(config), "digest": config_digest},
        "layers": layers,
        "subject": {"mediaType": subject.media_type, "size": len(subject.body), "digest": subject.digest},
    }, separators=(",", ":")).encode()
    manifest = Manifest(sha256_bytes(body), OCI_MANIFEST, body)
    tag = att_tag(subject.digest)
    if backend.ecr is not None:
        backend.ecr.put_tag(repo, tag, {"imageManifest": body.decode(), "imageManifestMediaType": OCI_MANIFEST,
                                        "imageId": {"imageDigest": manifest.digest}})
        return Artifact(manifest.digest, f"tag {tag} (ECR)", tuple(envelopes))
    if _has_referrers_api(backend, repo, subject.digest):
        resp = backend.http._request("PUT", f"{repo}/manifests/{manifest.digest}", repo, push=True, ok=(201,),
                                     headers={"Content-Type": OCI_MANIFEST}, data=body)
        if resp.headers.get("OCI-Subject") == subject.digest:
            return Artifact(manifest.digest, "OCI referrers API", tuple(envelopes))
        log.info("registry %s stored the artifact but did not take its subject; tagging it %s too", backend.host, tag)
    backend.http.put_manifest(repo, tag, manifest)
    return Artifact(manifest.digest, f"tag {tag}", tuple(envelopes))


def locate(backend: Backend, repo: str, digest: str) -> list[tuple[str, str]]:
    """(manifest digest, where) of every attestation artifact of ``digest``: cheap, no blobs read."""
    found: list[tuple[str, str]] = []
    if backend.ecr is None:
        index = _referrers(backend, repo, digest)
        for entry in (index or {}).get("manifests") or []:
            if entry.get("mediaType") == OCI_MANIFEST and entry.get("digest"):
                found.append((entry["digest"], "OCI referrers API"))
    tag = att_tag(digest)
    if backend.ecr is not None:
        image = backend.ecr.image(repo, tag)
        tagged = image["imageId"]["imageDigest"] if image else None
    else:
        tagged = backend.http.manifest_digest(repo, tag)
    if tagged and tagged not in {d for d, _ in found}:
        found.append((tagged, f"tag {tag}"))
    return found


def fetch(backend: Backend, repo: str, digest: str) -> list[Artifact]:
    """Every attestation artifact of ``digest`` with its DSSE envelopes (checked against their digests).

    Raises:
        RegistryError: the registry refused or stayed unreachable, or a blob is missing.
    """
    artifacts = []
    for manifest_digest, where in locate(backend, repo, digest):
        manifest = image_manifest(backend, repo, manifest_digest)
        if manifest is None:
            continue
        try:
            layers = json.loads(manifest.body).get("layers") or []
        except ValueError:
            raise RegistryError(f"{repo}@{manifest_digest} ({where}) is not a JSON manifest") from None
        envelopes = tuple(
            Envelope(str((layer.get("annotations") or {}).get(PREDICATE_TYPE, "")), get_blob(backend, repo, layer["digest"]))
            for layer in layers if layer.get("mediaType") == DSSE_MEDIA_TYPE and layer.get("digest")
        )
        artifacts.append(Artifact(manifest_digest, where, envelopes))
    return artifacts


_REFERRERS: dict[str, bool] = {}


def _referrers(backend: Backend, repo: str, digest: str) -> dict[str, Any] | None:
    """The referrers index of ``digest``, or None when the registry has no referrers API."""
    if _REFERRERS.get(backend.host) is False:
        return None
    resp = backend.http._request("GET", f"{repo}/referrers/{digest}", repo, ok=(200, 400, 404, 405),
                                 headers={"Accept": OCI_INDEX})
    supported = resp.status_code == 200 and "json" in resp.headers.get("Content-Type", "")
    _REFERRERS[backend.host] = supported
    if not supported:
        return None
    try:
        return dict(resp.json())
    except ValueError:
        return None


def _has_referrers_api(backend: Backend, repo: str, digest: str) -> bool:
    return _referrers(backend, repo, digest) is not None

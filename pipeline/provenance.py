"""in-toto Statements: SLSA Provenance v1 built from a stage's input key, and the checks on the way back.

The provenance of an image carries its whole input key: ``internalParameters``
holds the key and the parts it was computed from (build/keys/TASK.json), so a
verifier can recompute the key, compare it with the image's ``pipeline.inputs``
label, and explain in ``doit info`` words how the checkout differs today.
``resolvedDependencies`` lists the same parts as SLSA resource descriptors:
the parent image and every keyed file with its sha256.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline import signing
from pipeline.errors import VerificationFailed
from pipeline.keys import KEY_VERSION, InputKey, short
from pipeline.registry import referrers

if TYPE_CHECKING:
    from pipeline.settings import Settings

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
BUILD_TYPE = "urn:jupyterhub-image-pipeline:docker-build:v1"
BUILDER_ID = "urn:jupyterhub-image-pipeline:doit"


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or not value:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return value


def subject(name: str, digest: str) -> list[dict[str, Any]]:
    return [{"name": name, "digest": {"sha256": _hex(digest)}}]


def dependencies(parts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """SLSA resource descriptors of the key's parts: parent image, Dockerfile sources, context files."""
    out: list[dict[str, Any]] = []
    parent = parts.get("parent")
    if isinstance(parent, str) and parent.startswith("sha256:"):
        out.append({"name": "parent image", "digest": {"sha256": _hex(parent)},
                    "annotations": {"pipeline.role": "parent", "pipeline.image": parent}})
    dockerfile = parts.get("dockerfile") or {}
    for name, digest in sorted((dockerfile.get("sources") or {}).items()):
        out.append({"name": name, "digest": {"sha256": _hex(digest)}, "annotations": {"pipeline.role": "dockerfile"}})
    for name, entry in sorted((parts.get("files") or {}).items()):
        # "file:MODE:sha256:HEX", "dir", or "link:TARGET" (buildctx.collect.Entry.keyed)
        kind, _, rest = str(entry).partition(":")
        if kind == "file":
            mode, _, digest = rest.partition(":")
            out.append({"name": name, "digest": {"sha256": _hex(digest)},
                        "annotations": {"pipeline.role": "file", "pipeline.mode": mode}})
        elif kind == "link":
            out.append({"name": name, "content": base64.b64encode(rest.encode()).decode(),
                        "annotations": {"pipeline.role": "symlink", "pipeline.target": rest}})
        else:
            out.append({"name": name, "annotations": {"pipeline.role": "directory"}})
    for url in parts.get("urls") or []:
        out.append({"uri": url, "annotations": {"pipeline.role": "url"}})
    return out


def provenance_statement(
    *, name: str, digest: str, task: str, key: InputKey, external: Mapping[str, Any], metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 about ``name@digest`` with a SLSA Provenance v1 predicate.

    ``external`` are the user-controlled parameters (deployment, environment, build
    args); the key, its parts and the Dockerfile digest go in ``internalParameters``.
    """
    parts = copy.deepcopy(dict(key.parts))  # the statement is edited by nobody, but must not alias the key
    dockerfile = parts.get("dockerfile") or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject(name, digest),
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"stage": task, **external, "buildArgs": dict(parts.get("args") or {})},
                "internalParameters": {
                    "pipeline.inputs": key.digest,
                    "keyVersion": KEY_VERSION,
                    "keyParts": parts,
                    "dockerfileDigest": dockerfile.get("rendered"),
                },
                "resolvedDependencies": dependencies(parts),
            },
            "runDetails": {"builder": {"id": BUILDER_ID}, "metadata": dict(metadata)},
        },
    }


def sbom_statement(*, name: str, digest: str, bom: Mapping[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subject(name, digest), "predicateType": CYCLONEDX_BOM,
            "predicate": dict(bom)}


def check_subject(statement: Mapping[str, Any], digest: str, predicate_type: str) -> None:
    """The statement is an in-toto v1 statement of ``predicate_type`` whose subject includes ``digest``.

    Raises:
        VerificationFailed: another type, or a statement about another artifact.
    """
    if statement.get("_type") != STATEMENT_TYPE:
        raise VerificationFailed(f"payload is not an in-toto Statement v1 (_type {statement.get('_type')!r})")
    if statement.get("predicateType") != predicate_type:
        raise VerificationFailed(f"predicate type is {statement.get('predicateType')!r}, not {predicate_type}")
    subjects = statement.get("subject") or []
    found = [f"sha256:{s.get('digest', {}).get('sha256')}" for s in subjects if isinstance(s, dict)]
    if f"sha256:{_hex(digest)}" not in found:
        names = ", ".join(short(d) for d in found) or "nothing"
        raise VerificationFailed(f"the statement is about {names}, not this image {short(digest)}")


def attested_key(statement: Mapping[str, Any]) -> InputKey:
    """The input key a provenance statement attests, recomputed from its parts and checked against its digest.

    Raises:
        VerificationFailed: the parts are missing, or do not hash to the attested key.
    """
    internal = ((statement.get("predicate") or {}).get("buildDefinition") or {}).get("internalParameters") or {}
    digest, parts = internal.get("pipeline.inputs"), internal.get("keyParts")
    if not isinstance(digest, str) or not isinstance(parts, dict):
        raise VerificationFailed("the provenance carries no pipeline.inputs key and parts")
    if internal.get("keyVersion") != KEY_VERSION:
        raise VerificationFailed(f"the provenance uses key version {internal.get('keyVersion')}, this pipeline "
                                 f"{KEY_VERSION}")
    recomputed = InputKey.of(parts)
    if recomputed.digest != digest:
        raise VerificationFailed(f"the attested parts hash to {short(recomputed.digest)}, not the attested key "
                                 f"{short(digest)}")
    return recomputed


def build_statement(settings: Settings, task: str, key: InputKey, name: str, digest: str,
                    created: str | None, deployment: str | None) -> dict[str, Any]:
    """The provenance statement of one stage's image pushed as ``name@digest``."""
    external: dict[str, Any] = {"environment": settings.environment, "frozen": settings.frozen,
                                "namespace": settings.namespace}
    if deployment:
        external["deployment"] = deployment
    metadata = {"finishedOn": created} if created else {}
    return provenance_statement(name=name, digest=digest, task=task, key=key, external=external,
                                           metadata=metadata)


def open_provenance(artifacts: list[referrers.Artifact], digest: str, keys: list[signing.PublicKey],
                    ) -> tuple[signing.Opened, InputKey, list[str]]:
    """The first provenance envelope that verifies against ``keys`` and is about ``digest``, with its key.

    Returns the opened envelope, the attested key and the problems of the envelopes that failed.

    Raises:
        VerificationFailed: no provenance at all, or none that verifies (the first problem is named).
    """
    problems: list[str] = []
    seen = 0
    for artifact in artifacts:
        for envelope in artifact.envelopes:
            if envelope.predicate_type != SLSA_PROVENANCE:
                continue
            seen += 1
            try:
                opened = signing.open_envelope(envelope.data, keys)
                check_subject(opened.statement, digest, SLSA_PROVENANCE)
                return opened, attested_key(opened.statement), problems
            except VerificationFailed as exc:
                problems.append(f"{short(artifact.digest)} ({artifact.where}): {exc}")
    if not seen:
        raise VerificationFailed(f"no signed provenance is attached to {short(digest)} (unsigned)")
    raise VerificationFailed(f"attestation {problems[0]}")

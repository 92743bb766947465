"""The sbom stage: build/sbom/NAME.cdx.json (CycloneDX 1.6) and NAME.spdx.json (SPDX 2.3).

Both list every dpkg package (with its source package) and every Python
distribution of every environment, each with a purl, and describe the image
itself by its ID and, once pushed, its repository digest.  Nothing is read
from the image: the inventory is the manifest stage's (build/manifests/NAME.yaml),
and the documents are made and validated with the formats' own maintained
libraries (cyclonedx-python-lib, spdx-tools), imported only when this stage runs.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__, records
from pipeline.errors import PipelineError
from pipeline.files import write_text
from pipeline.hashing import sha256_bytes
from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Settings
from pipeline.stages.manifest import load_inventory
from pipeline.stages.publish import pushed_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

TOOL = "jupyterhub-image-pipeline"


@dataclass(frozen=True)
class Package:
    """One inventoried package: its ecosystem's purl and what the SBOM says about it."""

    kind: str  # deb | pypi
    name: str
    version: str
    purl: str
    ref: str  # unique within the document
    properties: tuple[tuple[str, str], ...] = ()
    source_info: str | None = None


@dataclass(frozen=True)
class Subject:
    deployment: str
    image_id: str
    tag: str
    repository: str
    digest: str  # the pushed manifest digest, "" before the push
    inputs: str


@dataclass(frozen=True)
class SbomResult:
    deployment: str
    cyclonedx: Path
    spdx: Path
    image_id: str
    digest: str
    packages: int

    def values(self) -> dict[str, Any]:
        return {"cyclonedx": str(self.cyclonedx), "spdx": str(self.spdx), "image": self.image_id,
                "digest": self.digest, "packages": self.packages}


def paths(settings: Settings, name: str) -> tuple[Path, Path]:
    folder = settings.build_dir / "sbom"
    return folder / f"{name}.cdx.json", folder / f"{name}.spdx.json"


def _record_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "sbom" / f"{name}.json"


def pushed_digest(settings: Settings, name: str, image_id: str) -> str:
    """The repository digest push:NAME recorded for this very image, else ""."""
    record = pushed_record(settings, name) or {}
    return str(record.get("digest") or "") if record.get("image") == image_id else ""


def sbom_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current while the documents exist unchanged and describe the tagged image (and its digest once pushed)."""
    ref = mission_spec(settings, settings.deployment(name)).ref
    image = engine.image(ref)
    if image is None:
        return Freshness(False, f"image {ref} is missing")
    record = records.load(_record_path(settings, name)) or {}
    if record.get("image") != image.id:
        return Freshness(False, f"image {short(image.id)} has no SBOM yet (last: {short(record.get('image'))})")
    digest = pushed_digest(settings, name, image.id)
    if record.get("digest", "") != digest:
        return Freshness(False, f"image was pushed as {short(digest)} since the SBOM was written")
    for path in paths(settings, name):
        try:
            if sha256_bytes(path.read_bytes()) != record.get("files", {}).get(path.name):
                return Freshness(False, f"{display(path)} was changed since it was written")
        except OSError:
            return Freshness(False, f"{display(path)} is missing")
    return Freshness(True, f"SBOM of image {short(image.id)} is current")


def packages(inventory: dict[str, Any]) -> list[Package]:
    """Every dpkg package and every Python distribution of every environment, with purls."""
    from packageurl import PackageURL

    os_release = inventory.get("os_release") or {}
    distro_id = str(os_release.get("ID") or "debian").lower()
    version_id = str(os_release.get("VERSION_ID") or "")
    distro = f"{distro_id}-{version_id}" if version_id else distro_id
    details = inventory.get("dpkg_details") or {}
    out: list[Package] = []
    for name, version in (inventory.get("dpkg") or {}).items():
        info = details.get(name) or {}
        source, source_version = info.get("source") or name, info.get("source_version") or str(version)
        qualifiers = {"arch": info.get("arch") or "", "distro": distro}
        if source != name or source_version != str(version):
            qualifiers["upstream"] = source if source_version == str(version) else f"{source}@{source_version}"
        purl = PackageURL("deb", distro_id, name, str(version), {k: v for k, v in qualifiers.items() if v}).to_string()
        out.append(Package(
            "deb", name, str(version), purl, purl,
            (("pipeline:dpkg:source", source), ("pipeline:dpkg:source_version", source_version),
             ("pipeline:dpkg:arch", info.get("arch") or "")),
            f"built package from: {source} {source_version}",
        ))
    for prefix, dists in (inventory.get("python") or {}).items():
        for name, version in (dists or {}).items():
            purl = PackageURL("pypi", None, name, str(version)).to_string()
            out.append(Package("pypi", name, str(version), purl, f"{purl}#{prefix}",
                               (("pipeline:python:environment", prefix),)))
    return out


def write_sbom(settings: Settings, engine: Engine, name: str) -> SbomResult:
    """Write both documents from the manifest stage's inventory, each validated by its library first.

    Raises:
        ImageNotFound: the image is not built.
        ConfigError: no current manifest of it.
        PipelineError: a library rejected a document (a bug: the message says which).
    """
    dep = settings.deployment(name)
    spec = mission_spec(settings, dep)
    image = engine.require(spec.ref, f"run `doit build:{name}` first")
    inventory = load_inventory(settings, name, image.id)
    digest = pushed_digest(settings, name, image.id)
    subject = Subject(name, image.id, spec.ref, dep.repository, digest, str((inventory.get("inputs") or {}).get("key") or ""))
    items = packages(inventory)
    cdx_path, spdx_path = paths(settings, name)
    cdx_text = cyclonedx_json(subject, items)
    spdx_text = spdx_json(subject, items)
    for path, text in ((cdx_path, cdx_text), (spdx_path, spdx_text)):
        write_text(path, text)
    records.save(_record_path(settings, name), {
        "image": image.id, "digest": digest,
        "files": {p.name: sha256_bytes(t.encode()) for p, t in ((cdx_path, cdx_text), (spdx_path, spdx_text))},
    })
    where = f"{dep.repository}@{short(digest)}" if digest else f"{short(image.id)} (not pushed yet: no repo digest)"
    log.info("sbom:%s: wrote %s and %s: %d packages, image %s", name, display(cdx_path), display(spdx_path),
             len(items), where)
    return SbomResult(name, cdx_path, spdx_path, image.id, digest, len(items))


def _serial(subject: Subject) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:{TOOL}:{subject.image_id}:{subject.digest}")


def _oci_purl(subject: Subject) -> str | None:
    if not subject.digest:
        return None
    from packageurl import PackageURL

    name = subject.repository.rsplit("/", 1)[-1]
    tag = subject.tag.rsplit(":", 1)[-1]
    return PackageURL("oci", None, name, subject.digest, {"repository_url": subject.repository, "tag": tag}).to_string()


def cyclonedx_json(subject: Subject, items: list[Package]) -> str:
    """CycloneDX 1.6 JSON, checked with the library's strict JSON-schema validator.

    Raises:
        PipelineError: the validator rejected it.
    """
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    props = [Property(name="pipeline:image_id", value=subject.image_id), Property(name="pipeline:tag", value=subject.tag)]
    if subject.inputs:
        props.append(Property(name="pipeline:inputs", value=subject.inputs))
    if subject.digest:
        props.append(Property(name="pipeline:repo_digest", value=f"{subject.repository}@{subject.digest}"))
    oci = _oci_purl(subject)
    root = Component(
        name=subject.repository, version=subject.digest or subject.image_id, type=ComponentType.CONTAINER,
        bom_ref=f"image:{subject.image_id}", purl=PackageURL.from_string(oci) if oci else None,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=subject.digest.split(":", 1)[1])] if subject.digest else [],
        properties=props,
    )
    bom = Bom(serial_number=_serial(subject))
    bom.metadata.component = root
    bom.metadata.timestamp = datetime.now(UTC)
    bom.metadata.tools.components.add(Component(name=TOOL, version=__version__, type=ComponentType.APPLICATION))
    components = []
    for item in items:
        component = Component(
            name=item.name, version=item.version, type=ComponentType.LIBRARY, bom_ref=item.ref,
            purl=PackageURL.from_string(item.purl),
            properties=[Property(name=k, value=v) for k, v in item.properties if v],
        )
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(root, components)
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise PipelineError(f"sbom: cyclonedx-python-lib rejected the CycloneDX document: {error}")
    return text + "\n"


def spdx_json(subject: Subject, items: list[Package]) -> str:
    """SPDX 2.3 JSON, checked with spdx-tools' full document validator.

    Raises:
        PipelineError: the validator rejected it.
    """
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        Checksum,
        ChecksumAlgorithm,
        CreationInfo,
        Document,
        ExternalPackageRef,
        ExternalPackageRefCategory,
        PackagePurpose,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.model import Package as SpdxPackage
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    def purl_ref(purl: str) -> ExternalPackageRef:
        return ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl)

    oci = _oci_purl(subject)
    image = SpdxPackage(
        "SPDXRef-image", subject.repository, SpdxNoAssertion(), version=subject.digest or subject.image_id,
        files_analyzed=False, primary_package_purpose=PackagePurpose.CONTAINER,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, subject.digest.split(":", 1)[1])] if subject.digest else [],
        external_references=[purl_ref(oci)] if oci else [],
        comment=f"image ID {subject.image_id}; tag {subject.tag}"
                + (f"; pipeline.inputs {subject.inputs}" if subject.inputs else ""),
    )
    packages_ = [image]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-image")]
    for n, item in enumerate(items, 1):
        spdx_id = f"SPDXRef-{item.kind}-{n}"
        comment = "; ".join(f"{k.split(':')[-1]}={v}" for k, v in item.properties if v) or None
        packages_.append(SpdxPackage(
            spdx_id, item.name, SpdxNoAssertion(), version=item.version, files_analyzed=False,
            source_info=item.source_info, external_references=[purl_ref(item.purl)], comment=comment,
            primary_package_purpose=PackagePurpose.LIBRARY,
        ))
        relationships.append(Relationship("SPDXRef-image", RelationshipType.CONTAINS, spdx_id))
    info = CreationInfo(
        "SPDX-2.3", "SPDXRef-DOCUMENT", f"{subject.deployment} {subject.tag}",
        f"urn:uuid:{_serial(subject)}", [Actor(ActorType.TOOL, f"{TOOL}-{__version__}")],
        datetime.now(UTC).replace(microsecond=0),
    )
    document = Document(info, packages=packages_, relationships=relationships)
    problems = validate_full_spdx_document(document)
    if problems:
        raise PipelineError(f"sbom: spdx-tools rejected the SPDX document: {problems[0].validation_message}")
    out = io.StringIO()
    write_document_to_stream(document, out, validate=False)
    return out.getvalue() + "\n"

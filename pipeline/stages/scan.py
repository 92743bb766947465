"""The scan stage: findings for the pushed image (ECR, or offline OSV), Ubuntu status, policy, gate, report."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from pipeline.errors import ConfigError, PipelineError, RegistryError, ScanIncomplete
from pipeline.files import write_bytes, write_text
from pipeline.findings.ecr_scan import ecr_findings
from pipeline.findings.model import Finding
from pipeline.findings.osv import OsvDatabase, Package
from pipeline.findings.policy import judge, load_ignores, relevant
from pipeline.findings.report import document, gate_failure, summary
from pipeline.findings.ubuntu import UbuntuCves, UbuntuSettings
from pipeline.keys import short
from pipeline.registry.backend import backend_for
from pipeline.settings import Deployment, Settings
from pipeline.stages.manifest import dpkg_sources, load_inventory, manifest_path
from pipeline.stages.publish import pushed_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)


class GateFailed(PipelineError):
    """The scan found unignored findings at a failing severity (doit exit code 1)."""


@dataclass(frozen=True)
class ScanResult:
    deployment: str
    target: str
    backend: str
    passed: bool
    counts: dict[str, int]
    report: str

    def values(self) -> dict[str, Any]:
        return {"target": self.target, "backend": self.backend, "passed": self.passed, "counts": self.counts}


@dataclass(frozen=True)
class Findings:
    """What a backend found, and for which image: ``digest`` must be the gated one for the gate to pass."""

    findings: list[Finding]
    digest: str
    image: str  # repo@sha256:… (ECR) or the local image's tag (OSV)
    inventory: dict[str, int] | None = None  # OSV: how many packages were matched


# Bumped whenever a change to the pipeline changes what a scan of the same image finds (a new
# matcher, a new manifest field): reports of an older logic are then stale.
LOGIC = 2


def backend_of(settings: Settings, dep: Deployment) -> str:
    return settings.scan.backend_for(dep.registry)


def report_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "reports" / f"{name}-scan.yaml"


def scan_inputs(settings: Settings, dep: Deployment) -> dict[str, Any]:
    """Everything besides the image that the result depends on, by the setting's name (for `doit info`)."""
    scan = settings.scan
    backend = backend_of(settings, dep)
    ignore = scan.ignore.read_bytes() if scan.ignore and scan.ignore.is_file() else None
    parts: dict[str, Any] = {
        "scan logic": LOGIC,
        "scan.backend": backend,
        "scan.min_severity": scan.min_severity,
        "scan.fail_on": list(scan.fail_on),
        "scan.ignore": hashlib.sha256(ignore).hexdigest()[:16] if ignore is not None else None,
        "scan.ubuntu.release": scan.ubuntu.release if scan.ubuntu else None,
        "scan.ubuntu.base_url": scan.ubuntu.base_url.rstrip("/") if scan.ubuntu else None,
    }
    if backend == "ecr":
        parts["repository"] = dep.repository
        parts["scan.ecr.allow_tag_fallback"] = scan.allow_tag_fallback
    else:
        parts["scan.osv"] = scan.osv
        parts["the OSV database"] = _osv_fingerprint(scan.osv)
        parts["scan.require_inventory"] = scan.require_inventory
        parts["the inventory in the manifest"] = _inventory_fingerprint(settings, dep.name)
    return parts


def _osv_fingerprint(source: str | None) -> str | None:
    """Names, sizes and mtimes of a local OSV directory's files (a URL is refreshed after scan.max_age)."""
    if not source or source.startswith(("http://", "https://")):
        return None
    root = Path(source)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.json")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _inventory_fingerprint(settings: Settings, name: str) -> str | None:
    try:
        manifest = yaml.safe_load(manifest_path(settings, name).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    parts = {key: manifest.get(key) for key in ("image", "os_release", "dpkg", "dpkg_details", "python")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def target_of(settings: Settings, engine: Engine, dep: Deployment) -> str:
    """The gated digest: ECR scans the pushed digest; OSV scans the local image (by its ID)."""
    if backend_of(settings, dep) == "osv":
        return engine.require(dep.image_ref(settings.environment), f"run `doit build:{dep.name}` first").id
    record = pushed_record(settings, dep.name)
    if not record or not record.get("digest"):
        raise ScanIncomplete(f"nothing pushed for {dep.name} yet; run `doit push:{dep.name}` first")
    return record["digest"]


def scan_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    dep = settings.deployment(name)
    try:
        report = yaml.safe_load(report_path(settings, name).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return Freshness(False, f"no scan report for {name} yet")
    target = target_of(settings, engine, dep)
    if report.get("target") != target:
        return Freshness(False, f"the image changed: {short(report.get('target'))} -> {short(target)}")
    if report.get("findings_digest") != target:
        return Freshness(False, f"the last report's findings are for {short(report.get('findings_digest'))}, "
                                f"not the gated {short(target)}")
    old = report.get("inputs")
    if not isinstance(old, dict):
        return Freshness(False, "the last report was written by an older pipeline")
    changed = [key for key, value in scan_inputs(settings, dep).items() if old.get(key) != value]
    if changed:
        return Freshness(False, f"changed since the last scan: {', '.join(changed)}")
    age = time.time() - float(report.get("scanned_epoch") or 0)
    if age > settings.scan.max_age:
        return Freshness(False, f"the last scan is {age / 3600:.1f} h old (scan.max_age {settings.scan.max_age / 3600:.1f} h)")
    if not report.get("passed"):
        return Freshness(False, "the last scan failed the gate")
    return Freshness(True, f"scanned {short(target)} {age / 3600:.1f} h ago and passed")


def scan(settings: Settings, engine: Engine, name: str) -> ScanResult:
    """Scan the deployment's image, apply the policy, write build/reports/NAME-scan.yaml.

    Raises:
        GateFailed: unignored findings at a failing severity (the report is written first).
        ScanIncomplete: the scan could not be done (no findings for the gated digest, nothing
            inventoried, a service down); it never passes the gate and writes no report.
    """
    dep = settings.deployment(name)
    backend = backend_of(settings, dep)
    inputs = scan_inputs(settings, dep)  # before scanning: what the result was computed from
    target = target_of(settings, engine, dep)
    try:
        found = _ecr(settings, dep, target) if backend == "ecr" else _osv(settings, dep, target)
    except ScanIncomplete:
        raise
    except (RegistryError, ConfigError, OSError) as exc:
        raise ScanIncomplete(f"{backend} scan of {dep.name}: {exc}") from None
    if found.digest != target:  # the backends refuse this already; never let another image's findings pass
        raise ScanIncomplete(f"the findings are for {found.digest}, not the gated {target}")
    policy = {"min_severity": settings.scan.min_severity, "fail_on": settings.scan.fail_on}
    findings = [f for f in found.findings if relevant(f, **policy)]
    if settings.scan.ubuntu:
        u = settings.scan.ubuntu
        enricher = UbuntuCves(UbuntuSettings(u.release, u.base_url, u.cache_ttl, u.parallel, u.timeout),
                              settings.build_dir / "cache" / "ubuntu-cve")
        findings = enricher.enrich(findings)
    verdict = judge(findings, **policy, ignores=load_ignores(settings.scan.ignore))
    now = time.time()
    header: dict[str, Any] = {
        "deployment": dep.name,
        "image": dep.image_ref(settings.environment),
        "target": target,
        "gated_digest": target,
        "findings_digest": found.digest,
        "findings_image": found.image,
        "backend": backend,
        "scanned_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
        "scanned_epoch": now,
        "policy": {"min_severity": settings.scan.min_severity, "fail_on": list(settings.scan.fail_on),
                   "ignore": str(settings.scan.ignore) if settings.scan.ignore else None},
        "inputs": inputs,
    }
    if found.inventory is not None:
        header["inventory"] = found.inventory
    path = report_path(settings, name)
    doc = document(header, verdict)
    write_text(path, yaml.safe_dump(doc, sort_keys=False))
    what = found.image if backend == "ecr" else f"{header['image']} (image {short(target)})"
    title = f"scan:{name}: {what} ({backend}); report {path}"
    if found.inventory is not None:
        title += f"\n  {_inventoried(found.inventory)}"
    log.info("%s", summary(title, verdict, settings.scan.fail_on))
    if not verdict.passed:
        raise GateFailed(f"{gate_failure(verdict, settings.scan.fail_on)}; report: {display(path)}")
    return ScanResult(dep.name, target, backend, True, doc["counts"], str(path))


def _inventoried(inventory: dict[str, int]) -> str:
    return (f"{inventory['packages']} packages inventoried ({inventory['dpkg']} dpkg, "
            f"{inventory['python']} Python)")


def _ecr(settings: Settings, dep: Deployment, digest: str) -> Findings:
    ecr = backend_for(dep.registry).ecr
    if ecr is None:
        raise ConfigError(f"scan.backend ecr needs an ECR registry; {dep.name} uses {dep.registry.host} "
                          "(set scan.backend: osv, or auto)")
    fallback = dep.tag("promoted", settings.environment) if settings.scan.allow_tag_fallback else None
    result = ecr_findings(ecr, dep.repo, digest, fallback_tag=fallback, timeout=settings.scan.timeout,
                          poll=settings.scan.poll, deployment=dep.name)
    return Findings(result.findings, result.digest, f"{dep.repository}@{result.digest}")


def _osv(settings: Settings, dep: Deployment, image_id: str) -> Findings:
    if not settings.scan.osv:
        raise ConfigError("the osv scan backend needs scan.osv in deployments/pipeline.yaml "
                          "(a directory of OSV JSON files, or a URL of a zip of them)")
    packages, described = inventory(settings, dep.name, image_id)
    counts = {"packages": len(packages), "dpkg": sum(1 for p in packages if p.ecosystem != "PyPI"),
              "python": sum(1 for p in packages if p.ecosystem == "PyPI")}
    if not packages and settings.scan.require_inventory:
        raise ScanIncomplete(
            f"0 packages inventoried in {dep.image_ref(settings.environment)} ({display(manifest_path(settings, dep.name))} "
            "lists no dpkg database and no Python environment), so nothing could be scanned; check the image, "
            "or set scan.require_inventory: false to let such an image pass")
    db = OsvDatabase.load(osv_directory(settings))
    return Findings(db.match(packages), described, dep.image_ref(settings.environment), counts)


def osv_directory(settings: Settings) -> Path:
    """scan.osv as a directory; a URL is downloaded (zip) into build/cache/osv/ and refreshed after scan.max_age."""
    source = settings.scan.osv or ""
    if not source.startswith(("http://", "https://")):
        return Path(source)
    target = settings.build_dir / "cache" / "osv" / hashlib.sha256(source.encode()).hexdigest()[:16]
    stamp = target / ".fetched"
    if stamp.is_file() and time.time() - stamp.stat().st_mtime < settings.scan.max_age:
        return target
    try:
        resp = requests.get(source, timeout=(10, 300))
        resp.raise_for_status()
        with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
            for member in archive.infolist():
                if member.filename.endswith(".json") and ".." not in member.filename:
                    write_bytes(target / Path(member.filename).name, archive.read(member))
    except (requests.RequestException, zipfile.BadZipFile) as exc:
        if stamp.is_file():
            log.warning("scan: cannot refresh the OSV database from %s (%s); using the cached copy", source, exc)
            return target
        raise ConfigError(f"scan.osv: cannot download {source}: {exc}") from None
    write_text(stamp, source)
    return target


_DISTROS = {"debian": "Debian", "ubuntu": "Ubuntu"}


def inventory(settings: Settings, name: str, image_id: str) -> tuple[list[Package], str]:
    """The image's dpkg and Python packages, from build/manifests/NAME.yaml, and the image ID it describes.

    dpkg binaries carry their source package and version (the manifest's ``dpkg_details``), which
    Debian's advisories name.

    Raises:
        ConfigError: no manifest of this image yet (run `doit manifest:NAME`).
    """
    manifest = load_inventory(settings, name, image_id)
    recorded = manifest["image"]["id"]
    os_release = manifest.get("os_release") or {}
    ids = [str(os_release.get("ID", "")).lower(), *str(os_release.get("ID_LIKE", "")).lower().split()]
    distro = next((_DISTROS[i] for i in ids if i in _DISTROS), None)
    packages: list[Package] = []
    if manifest.get("dpkg") and not distro:
        log.warning("scan:%s: the %d dpkg packages are not scanned: os-release ID %r is not Debian or Ubuntu, "
                    "whose advisories the OSV backend knows", name, len(manifest["dpkg"]), os_release.get("ID"))
    elif manifest.get("dpkg"):
        ecosystem = f"{distro}:{os_release.get('VERSION_ID', '')}".rstrip(":")
        sources = dpkg_sources(manifest.get("dpkg_details") or {}, manifest["dpkg"])
        for pkg, version in manifest["dpkg"].items():
            source = sources.get(pkg) or {}
            packages.append(Package(ecosystem, pkg, str(version), str(source.get("source") or ""),
                                    source_version=str(source.get("version") or "")))
    for prefix, envs in (manifest.get("python") or {}).items():
        for pkg, version in (envs or {}).items():
            packages.append(Package("PyPI", pkg, str(version), where=prefix))
    return packages, str(recorded)

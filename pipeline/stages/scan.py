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
from typing import Any

import requests
import yaml

from pipeline.engine import Engine
from pipeline.errors import ConfigError, PipelineError, RegistryError, ScanIncomplete
from pipeline.files import write_bytes, write_text
from pipeline.keys import short
from pipeline.registry.backend import backend_for
from pipeline.scan.ecr_scan import ecr_findings
from pipeline.scan.model import Finding
from pipeline.scan.osv import OsvDatabase, Package
from pipeline.scan.policy import judge, load_ignores
from pipeline.scan.report import document, summary
from pipeline.scan.ubuntu import UbuntuCves, UbuntuSettings
from pipeline.settings import Deployment, Settings
from pipeline.stages.manifest import manifest_path
from pipeline.stages.publish import pushed_record
from pipeline.stages.results import Freshness

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


def backend_of(settings: Settings, dep: Deployment) -> str:
    return settings.scan.backend_for(dep.registry)


def report_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "reports" / f"{name}-scan.yaml"


def policy_key(settings: Settings) -> str:
    """What the verdict depends on besides the image: the policy and the ignore file's content."""
    scan = settings.scan
    ignore = scan.ignore.read_bytes() if scan.ignore and scan.ignore.is_file() else b""
    text = json.dumps([scan.backend, scan.osv, scan.min_severity, list(scan.fail_on), scan.ubuntu and scan.ubuntu.release,
                       hashlib.sha256(ignore).hexdigest()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def target_of(settings: Settings, engine: Engine, dep: Deployment) -> str:
    """What is scanned: ECR scans the pushed digest; OSV scans the local image (by its ID)."""
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
    if report.get("policy_key") != policy_key(settings):
        return Freshness(False, "the scan policy or the ignore file changed")
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
        ScanIncomplete: the scan could not be done; it never passes the gate.
    """
    dep = settings.deployment(name)
    backend = backend_of(settings, dep)
    target = target_of(settings, engine, dep)
    try:
        findings = _ecr(settings, dep, target) if backend == "ecr" else _osv(settings, name, target)
    except ScanIncomplete:
        raise
    except (RegistryError, ConfigError, OSError) as exc:
        raise ScanIncomplete(f"{backend} scan of {dep.name}: {exc}") from None
    if settings.scan.ubuntu:
        u = settings.scan.ubuntu
        enricher = UbuntuCves(UbuntuSettings(u.release, u.base_url, u.cache_ttl, u.parallel, u.timeout),
                              settings.build_dir / "cache" / "ubuntu-cve")
        findings = enricher.enrich(findings)
    verdict = judge(findings, min_severity=settings.scan.min_severity, fail_on=settings.scan.fail_on,
                    ignores=load_ignores(settings.scan.ignore))
    now = time.time()
    header = {
        "deployment": dep.name,
        "image": dep.image_ref(settings.environment),
        "target": target,
        "backend": backend,
        "scanned_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
        "scanned_epoch": now,
        "policy": {"min_severity": settings.scan.min_severity, "fail_on": list(settings.scan.fail_on),
                   "ignore": str(settings.scan.ignore) if settings.scan.ignore else None},
        "policy_key": policy_key(settings),
    }
    path = report_path(settings, name)
    doc = document(header, verdict)
    write_text(path, yaml.safe_dump(doc, sort_keys=False))
    what = f"{dep.repository}@{short(target)}" if backend == "ecr" else f"{header['image']} (image {short(target)})"
    log.info("%s", summary(f"scan:{name}: {what} ({backend}); report {path}", verdict, settings.scan.fail_on))
    if not verdict.passed:
        raise GateFailed(
            f"gate failed: {len(verdict.failing)} unignored findings at {'/'.join(settings.scan.fail_on)} "
            f"(first: {verdict.failing[0].id} in {verdict.failing[0].package}); report: {path}"
        )
    return ScanResult(dep.name, target, backend, True, doc["counts"], str(path))


def _ecr(settings: Settings, dep: Deployment, digest: str) -> list[Finding]:
    ecr = backend_for(dep.registry).ecr
    if ecr is None:
        raise ConfigError(f"scan.backend ecr needs an ECR registry; {dep.name} uses {dep.registry.host} (use osv)")
    return ecr_findings(ecr, dep.repo, digest, fallback_tag=dep.tag("promoted", settings.environment),
                        timeout=settings.scan.timeout, poll=settings.scan.poll)


def _osv(settings: Settings, name: str, image_id: str) -> list[Finding]:
    if not settings.scan.osv:
        raise ConfigError("the osv scan backend needs scan.osv (a directory of OSV JSON files, or a URL of a zip)")
    db = OsvDatabase.load(osv_directory(settings))
    return db.match(inventory(settings, name, image_id))


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


def inventory(settings: Settings, name: str, image_id: str) -> list[Package]:
    """The image's dpkg and Python packages, from build/manifests/NAME.yaml.

    Raises:
        ConfigError: no manifest of this image yet (run `doit manifest:NAME`).
    """
    path = manifest_path(settings, name)
    try:
        manifest = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"no manifest {path}; run `doit manifest:{name}` first") from None
    recorded = (manifest.get("image") or {}).get("id")
    if recorded and recorded != image_id:
        raise ConfigError(f"{path} describes {short(recorded)}, not the current image {short(image_id)}; "
                          f"run `doit manifest:{name}`")
    os_release = manifest.get("os_release") or {}
    distro = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(str(os_release.get("ID", "")).lower())
    packages: list[Package] = []
    if distro:
        ecosystem = f"{distro}:{os_release.get('VERSION_ID', '')}".rstrip(":")
        sources = manifest.get("dpkg_sources") or {}
        for pkg, version in (manifest.get("dpkg") or {}).items():
            packages.append(Package(ecosystem, pkg, str(version), str(sources.get(pkg, ""))))
    for prefix, envs in (manifest.get("python") or {}).items():
        for pkg, version in (envs or {}).items():
            packages.append(Package("PyPI", pkg, str(version), where=prefix))
    return packages

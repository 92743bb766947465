"""The deps scanner: frozen requirements and the installed environment vs pip-audit and sscan.osv."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline.errors import ConfigError, PipelineError, ScanIncomplete
from pipeline.findings.model import Finding
from pipeline.findings.osv import OsvDatabase, Package
from pipeline.findings.policy import IgnoreEntry, load_ignores
from pipeline.run import run
from pipeline.settings import Settings
from pipeline.stages import sscan_files as files
from pipeline.stages.sscan.outcome import Inputs, SourceScan
from pipeline.stages.sscan.tool_run import _condensed, _module_command, unreachable
from pipeline.yamlfile import display

log = logging.getLogger(__name__)

PIP_AUDIT_REQUEST_TIMEOUT = 15  # seconds per request to PyPI's vulnerability service


@dataclass
class _Audit:
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # could not audit: fails, incomplete
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def requirements(path: Path) -> tuple[list[Package], list[str]]:
    """The pinned packages of a requirements file, and notes about lines that are not pins."""
    packages, notes = [], []
    where = display(path)
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            notes.append(f"{where}:{number}: option line not audited: {line[:60]}")
            continue
        try:
            req = Requirement(line.split(" --hash")[0].rstrip(" \\"))
        except InvalidRequirement:
            notes.append(f"{where}:{number}: not a requirement, not audited: {line[:60]}")
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(pins) != 1:
            notes.append(f"{where}:{number}: {req.name} is not pinned (==), not audited offline")
            continue
        packages.append(Package("PyPI", req.name, pins[0].version, where=where))
    return packages, notes


def _scan_deps(settings: Settings, found: Inputs) -> SourceScan:
    sscan = settings.sscan
    audit = _Audit()
    targets: list[tuple[str, list[Package], Path | None]] = []  # (where, packages, requirements file)
    for name in found.files:
        path = Path(name)
        try:
            packages, notes = requirements(path)
        except (OSError, UnicodeDecodeError) as exc:
            audit.problems.append(f"{display(path)}: cannot read: {exc}")
            continue
        audit.notes += notes
        targets.append((display(path), packages, path))
    if files.audits_installed(settings):
        installed = [Package("PyPI", n, v, where="installed environment") for n, v in files.installed_distributions()]
        targets.append(("installed environment", installed, None))
    if not sscan.pip_audit and not sscan.osv:
        audit.problems.append("no vulnerability source: sscan.pip_audit is false and sscan.osv is not set")
    if sscan.osv:
        db = _osv_database(sscan.osv)
        audit.sources.append(f"OSV ({db.count} advisories)")
        for _, packages, _ in targets:
            audit.findings += [f.with_(source="osv") for f in db.match(packages)]
    if sscan.pip_audit:
        audit.sources.append("pip-audit")
        for where, packages, path in targets:
            _pip_audit(settings, where, packages, path, audit)
    return _verdict(settings, audit, sum(len(p) for _, p, _ in targets), len(targets))


def _osv_database(source: Path) -> OsvDatabase:
    if source.is_dir():
        try:
            return OsvDatabase.load(source)
        except ConfigError as exc:
            raise ScanIncomplete(f"s{exc}") from None
    import zipfile

    try:
        with zipfile.ZipFile(source) as archive:
            advisories = [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith(".json")]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ScanIncomplete(f"sscan.osv: cannot read {display(source)}: {exc}") from None
    return OsvDatabase(a for a in advisories if isinstance(a, dict) and a.get("id"))


def _pip_audit(settings: Settings, where: str, packages: list[Package], path: Path | None, audit: _Audit) -> None:
    """Audit one requirements file (or the installed environment) against PyPI's service; an audit that
    could not be done (unreachable service, packages skipped, nothing audited) is a problem, never a pass."""
    try:
        command = _module_command("pip_audit")
    except ScanIncomplete as exc:
        audit.problems.append(str(exc))
        return
    if path is not None and not packages:
        return
    with tempfile.TemporaryDirectory(prefix="sscan-") as tmp:
        out = Path(tmp) / "pip-audit.json"
        args = [*command, "--strict", "--progress-spinner", "off", "--format", "json", "--output", str(out),
                "--timeout", str(PIP_AUDIT_REQUEST_TIMEOUT)]
        args += ["--no-deps", "--disable-pip", "-r", str(path)] if path is not None else ["--skip-editable"]
        try:
            result = run(args, check=False, cwd=files.project_root(settings), timeout=settings.sscan.timeout)
        except PipelineError as exc:  # timed out
            audit.problems.append(f"{where}: pip-audit: {exc}".splitlines()[0])
            return
        try:
            report = json.loads(out.read_text())
        except (OSError, ValueError):
            report = None
    if not isinstance(report, dict):
        audit.problems.append(f"{where}: pip-audit: {unreachable(result.output) or _condensed(result.output)}")
        return
    deps = [d for d in report.get("dependencies") or [] if isinstance(d, dict)]
    audited = [d for d in deps if not d.get("skip_reason")]
    if not audited and (deps or packages):
        audit.problems.append(f"{where}: pip-audit audited none of {len(deps) or len(packages)} packages "
                              "(it reports 'No known vulnerabilities found' even then)")
        return
    for dep in audited:
        for vuln in dep.get("vulns") or []:
            audit.findings.append(Finding(
                id=str(vuln.get("id")), severity="UNDEFINED", package=str(dep.get("name")),
                installed=str(dep.get("version", "")), fixed=", ".join(vuln.get("fix_versions") or []),
                source="pip-audit", aliases=tuple(vuln.get("aliases") or ()), notes=(where,),
            ))


def _verdict(settings: Settings, audit: _Audit, count: int, targets: int) -> SourceScan:
    today = dt.date.today()
    entries: list[tuple[IgnoreEntry, Path]] = [(e, p) for p in settings.sscan.ignore for e in load_ignores(p)]
    unique: dict[tuple[str, str, str], Finding] = {}
    for finding in audit.findings:
        ids = sorted({finding.id.upper(), *(a.upper() for a in finding.aliases)})
        key = (canonicalize_name(finding.package), finding.installed, ",".join(ids))
        unique.setdefault(key, finding)
    failing, ignored, used = [], [], set()
    for finding in sorted(unique.values(), key=lambda f: (f.package.lower(), f.id)):
        matching = [(e, p) for e, p in entries if e.matches(finding)]
        used.update(id(e) for e, _ in matching)
        active = [(e, p) for e, p in matching if not e.expired(today)]
        if active:
            ignored.append(f"ignored: {_describe(finding)} ({active[0][0].reason})")
        else:
            failing.append(_describe(finding))
    notes = list(audit.notes) + ignored
    for entry, path in entries:
        if entry.expired(today):
            notes.append(f"ignore entry {entry.id} in {display(path)} expired on {entry.expires}; "
                         "it no longer ignores anything: renew it or remove it")
        elif id(entry) not in used:
            notes.append(f"ignore entry {entry.id} in {display(path)} matched no finding; remove it if it is fixed")
    sources = " + ".join(audit.sources) or "no source"
    what = f"{count} packages in {targets} inventories ({sources})"
    if audit.problems:
        return SourceScan("deps", False, f"could not audit: {audit.problems[0]}", tuple(failing + audit.problems),
                          tuple(notes), incomplete=not failing)
    if failing:
        return SourceScan("deps", False, f"{len(failing)} vulnerable packages among {what}", tuple(failing),
                          tuple(notes))
    return SourceScan("deps", True, f"no known vulnerabilities in {what}", (), tuple(notes))


def _describe(finding: Finding) -> str:
    where = f"{finding.notes[0]}: " if finding.notes else ""
    aliases = f" ({', '.join(finding.aliases)})" if finding.aliases else ""
    fixed = f", fixed in {finding.fixed}" if finding.fixed else ""
    return f"{where}{finding.package}=={finding.installed} {finding.id}{aliases}{fixed} [{finding.source}]"

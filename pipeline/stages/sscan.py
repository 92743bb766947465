"""Source scanning: yaml, lint (ruff), bandit and deps (pip-audit and an offline OSV database).

Each scanner reads a set of files and settings; their key (content digests,
settings, tool version) and the outcome are recorded in build/sscan/NAME.json.
A scanner is current while its key is unchanged and its last run passed; a
failing scanner stays stale.  See docs/security.md.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline import records, yamlfile
from pipeline.config import Settings
from pipeline.errors import ConfigError, PipelineError, ScanIncomplete
from pipeline.hashing import FileHasher, sha256_text
from pipeline.run import run
from pipeline.scan.model import Finding
from pipeline.scan.osv import OsvDatabase, Package
from pipeline.scan.policy import IgnoreEntry, load_ignores
from pipeline.stages import sscan_files as files
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

log = logging.getLogger(__name__)

SCANNERS = ("yaml", "lint", "bandit", "deps")
RECORD_VERSION = 1
PIP_AUDIT_REQUEST_TIMEOUT = 15  # seconds per request to PyPI's vulnerability service
_MODULES = {"lint": "ruff", "bandit": "bandit", "deps": "pip_audit"}
_PACKAGES = {"ruff": "ruff", "bandit": "bandit", "pip_audit": "pip-audit"}


class ScanFailed(PipelineError):
    """A source scanner found problems (doit exit code 1)."""


@dataclass(frozen=True)
class SourceScan:
    """The outcome of one scanner."""

    scanner: str
    ok: bool
    summary: str  # "12 YAML files load", "3 findings in 40 Python files"
    findings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # warnings that do not fail: expired or unused ignore entries, unpinned lines
    incomplete: bool = False  # the scanner could not do its job (tool missing or crashed, service unreachable)
    ran: bool = True  # False: taken from the record (up to date)

    def values(self) -> dict[str, Any]:
        return {"scanner": self.scanner, "ok": self.ok, "summary": self.summary, "findings": len(self.findings)}

    @property
    def line(self) -> str:
        verdict = "OK   " if self.ok else "ERROR"
        state = " (up to date)" if not self.ran else ""
        return f"{verdict} sscan:{self.scanner:<7} {self.summary}{state}"


@dataclass(frozen=True)
class SscanSummary:
    results: tuple[SourceScan, ...]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(r.scanner for r in self.results if not r.ok)

    def values(self) -> dict[str, Any]:
        return {"failed": list(self.failed), "scanners": {r.scanner: r.ok for r in self.results}}


@dataclass(frozen=True)
class Inputs:
    """What one scanner reads: files (with their digests) and everything else its verdict depends on."""

    scanner: str
    files: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return sha256_text(json.dumps([RECORD_VERSION, self.scanner, self.files, self.settings], sort_keys=True))


# -- inputs, records and freshness -------------------------------------------------------------

def record_path(settings: Settings, scanner: str) -> Path:
    return settings.build_dir / "sscan" / f"{scanner}.json"


def _check_name(scanner: str) -> None:
    if scanner not in SCANNERS:
        raise PipelineError(f"unknown scanner {scanner!r}; the scanners are: {', '.join(SCANNERS)}")


def _tool_version(module: str) -> str:
    try:
        return importlib.metadata.version(_PACKAGES[module])
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def inputs(settings: Settings, hasher: FileHasher, scanner: str) -> Inputs:
    _check_name(scanner)
    found = files.discover(settings)
    if scanner == "yaml":
        return Inputs(scanner, files.digests(hasher, found.yaml), {"pyyaml": yaml.__version__, "rules": "duplicate-keys"})
    if scanner in ("lint", "bandit"):
        config = files.ruff_config(settings) if scanner == "lint" else files.bandit_config(settings)
        extra = {"config": str(config) if config else None, "tool": _tool_version(_MODULES[scanner])}
        if config:
            extra["config_digest"] = hasher.digest(config)
        return Inputs(scanner, files.digests(hasher, found.python), extra)
    sscan = settings.sscan
    extra = {
        "pip_audit": sscan.pip_audit,
        "tool": _tool_version("pip_audit") if sscan.pip_audit else None,
        "osv": [str(sscan.osv), files.tree_stamp(sscan.osv)] if sscan.osv else None,
        "ignore": files.digests(hasher, sscan.ignore),
        "installed": files.installed_distributions() if files.audits_installed(settings) else None,
        # advisories appear and ignore entries expire: a passing audit is redone the next day
        "date": dt.date.today().isoformat(),
    }
    return Inputs(scanner, files.digests(hasher, files.requirement_files(settings)), extra)


def _load_record(settings: Settings, scanner: str) -> dict[str, Any] | None:
    return records.load(record_path(settings, scanner))


def _save_record(settings: Settings, found: Inputs, result: SourceScan) -> None:
    record = {
        "key": found.key,
        "files": found.files,
        "settings": found.settings,
        "ok": result.ok,
        "summary": result.summary,
        "findings": list(result.findings),
        "notes": list(result.notes),
        "incomplete": result.incomplete,
    }
    records.save(record_path(settings, found.scanner), record)


def freshness(settings: Settings, hasher: FileHasher, scanner: str) -> Freshness:
    """Current when the recorded key equals the current one and that run passed."""
    found = inputs(settings, hasher, scanner)
    record = _load_record(settings, scanner)
    if record is None:
        return Freshness(False, f"sscan:{scanner} has not run yet ({display(record_path(settings, scanner))} is missing)")
    if record.get("key") == found.key:
        if record.get("ok"):
            return Freshness(True, f"sscan:{scanner} passed with these inputs: {record.get('summary')}")
        return Freshness(False, f"sscan:{scanner} failed last time ({record.get('summary')}); a failing scanner reruns")
    return Freshness(False, _explain(record, found))


def _explain(record: dict[str, Any], found: Inputs) -> str:
    before: dict[str, str] = record.get("files") or {}
    changed = [p for p in found.files if p in before and before[p] != found.files[p]]
    added = [p for p in found.files if p not in before]
    removed = [p for p in before if p not in found.files]
    reasons = []
    for what, paths in (("changed", changed), ("new", added), ("gone", removed)):
        if paths:
            shown = ", ".join(display(Path(p)) for p in paths[:3])
            more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
            reasons.append(f"{what}: {shown}{more}")
    old_settings = record.get("settings") or {}
    for key in sorted(set(old_settings) | set(found.settings)):
        if old_settings.get(key) != found.settings.get(key):
            reasons.append(f"{key} changed")
    return f"sscan:{found.scanner}: " + ("; ".join(reasons) or "inputs changed")


# -- running -----------------------------------------------------------------------------------

def scan_sources(settings: Settings, hasher: FileHasher, scanner: str, *, fresh: Freshness | None = None) -> SourceScan:
    """Run one scanner (or, when ``fresh`` says it is current, take its recorded result) and record it.

    Never raises for findings: the result says whether it passed.

    Raises:
        ConfigError: an ignore file or the OSV database is invalid.
    """
    found = inputs(settings, hasher, scanner)
    if fresh is not None and fresh.current:
        record = _load_record(settings, scanner) or {}
        return SourceScan(scanner, True, str(record.get("summary", "")), notes=tuple(record.get("notes") or ()),
                          ran=False)
    runner: Callable[[Settings, Inputs], SourceScan] = {
        "yaml": _scan_yaml, "lint": _scan_lint, "bandit": _scan_bandit, "deps": _scan_deps,
    }[scanner]
    log.info("sscan:%s: scanning %d files", scanner, len(found.files))
    result = runner(settings, found)
    for line in result.findings:
        log.info("  %s", line)
    for note in result.notes:
        log.warning("  note: %s", note)
    _save_record(settings, found, result)
    return result


def check(settings: Settings, hasher: FileHasher, scanner: str) -> SourceScan:
    """One scanner's task: run it and fail on findings.

    Raises:
        ScanFailed: findings (listed above the error).
        ScanIncomplete: the scanner could not do its job (exit code 2).
    """
    result = scan_sources(settings, hasher, scanner)
    log.info("%s", result.line)
    if result.incomplete:
        hint = _incomplete_hint(settings, scanner, result.summary)
        raise ScanIncomplete(f"{result.summary}; {hint}" if hint else result.summary)
    if not result.ok:
        raise ScanFailed(f"{result.summary}; {_fix_hint(scanner)}")
    return result


def scan_all(settings: Settings, hasher: FileHasher) -> SscanSummary:
    """Every scanner: the stale ones run, the current ones report their record; one OK/ERROR line each.

    Raises:
        ScanFailed: "N scanners failed: ..." (after every scanner ran).
    """
    results = []
    for scanner in SCANNERS:
        try:
            fresh = freshness(settings, hasher, scanner)
            results.append(scan_sources(settings, hasher, scanner, fresh=fresh))
        except PipelineError as exc:
            results.append(SourceScan(scanner, False, str(exc), incomplete=True))
        finally:
            hasher.save()
    summary = SscanSummary(tuple(results))
    log.info("")
    for result in results:
        log.info("%s", result.line)
    if summary.failed:
        count = len(summary.failed)
        raise ScanFailed(f"{count} scanner{'s' if count != 1 else ''} failed: {', '.join(summary.failed)} "
                         f"(details above; run one alone with `doit sscan:NAME`)")
    log.info("sscan: %d scanners OK", len(results))
    return summary


def _incomplete_hint(settings: Settings, scanner: str, summary: str) -> str:
    """What to do when a scanner could not do its job, for the settings as they are (never "set X" when X is set)."""
    if scanner != "deps":
        return ""
    sscan = settings.sscan
    if not sscan.pip_audit and not sscan.osv:
        return ("set sscan.osv to an offline OSV database (a directory or .zip of OSV JSON files), "
                "or sscan.pip_audit: true where PyPI can be reached")
    if "pip-audit" in summary:
        fallback = ("or set sscan.pip_audit: false to rely on sscan.osv alone" if sscan.osv else
                    "or set sscan.pip_audit: false and set sscan.osv to an offline OSV database")
        return f"check access to PyPI (HTTPS_PROXY, REQUESTS_CA_BUNDLE), {fallback}"
    return ""


def _fix_hint(scanner: str) -> str:
    return {
        "yaml": "fix the YAML at the lines shown (syntax, keys given twice)",
        "lint": "fix the lines shown (ruff check --fix fixes some)",
        "bandit": "fix the lines shown, or mark a reviewed line with `# nosec BXXX`",
        "deps": "upgrade the packages shown, or add a reviewed entry to an sscan.ignore file",
    }[scanner]


# -- yaml ----------------------------------------------------------------------------------------

def _scan_yaml(settings: Settings, found: Inputs) -> SourceScan:
    problems = [p for p in (_yaml_problem(Path(name)) for name in found.files) if p]
    count = len(found.files)
    if problems:
        return SourceScan("yaml", False, f"{len(problems)} of {count} YAML files do not load", tuple(problems))
    return SourceScan("yaml", True, f"{count} YAML files load")


def _yaml_problem(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return f"{display(path)}: not UTF-8 text"
    except OSError as exc:
        return f"{display(path)}: cannot read: {exc.strerror}"
    try:
        yamlfile.parse_all(text)  # a key given twice is a problem too: PyYAML alone keeps the last one
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        return f"{display(path)}{where}: {exc.problem or exc.context or 'invalid YAML'}"
    except yaml.YAMLError as exc:
        return f"{display(path)}: {exc}"
    return None


# -- lint and bandit: programs from the pipeline's environment -------------------------------------

def _module_command(module: str) -> list[str]:
    """``python -m MODULE`` from the pipeline's own environment.

    Raises:
        ScanIncomplete: the tool is not installed.
    """
    if importlib.util.find_spec(module) is None:
        package = _PACKAGES[module]
        raise ScanIncomplete(f"{package} is not installed: pip install {package} (scripts/setup installs it)")
    return [files.python_executable(), "-m", module]


def _condensed(output: str) -> str:
    """The one line of a tool's output that says what went wrong (shortened at a word, never mid-token)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("ERROR", "error:")) or "Error:" in line:
            return _at_word(re.sub(r"^(ERROR|WARNING):[\w.]+:", "", line).strip())
    return _at_word(lines[-1]) if lines else "(no output)"


def _at_word(text: str, limit: int = 300) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " … (the whole output is in the task's log)"


_POOL = re.compile(r"HTTPS?ConnectionPool\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)")
_CONN = re.compile(r"HTTPS?Connection\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)")
_CAUSES = (
    ("connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("name or service not known", "the host name does not resolve"),
    ("temporary failure in name resolution", "the host name does not resolve"),
    ("certificate_verify_failed", "its TLS certificate is not trusted (set REQUESTS_CA_BUNDLE to the CA bundle)"),
)


def unreachable(output: str) -> str:
    """For a tool (pip-audit) that died on a network error: what it could not reach, host and port, and why.

    "" when the output shows no network error. Reads the exception text, so nothing cut mid-token is shown.
    """
    lines = [line for line in output.splitlines() if "ConnectionPool(host=" in line]
    if not lines:
        return ""
    line = lines[-1]
    target = _POOL.search(line)
    if target is None:
        return ""
    lowered = line.lower()
    cause = next((words for needle, words in _CAUSES if needle in lowered), "the connection failed")
    where = f"{target['host']}:{target['port']}"
    if "proxyerror" in lowered:
        proxy = _CONN.search(line)
        via = f"the proxy {proxy['host']}:{proxy['port']}" if proxy else "the proxy"
        return f"cannot reach {where} through {via} ({cause})"
    return f"cannot reach {where} ({cause})"


def _scan_lint(settings: Settings, found: Inputs) -> SourceScan:
    paths = list(found.files)
    count = len(paths)
    if not paths:
        return SourceScan("lint", True, "no Python files")
    config = files.ruff_config(settings)
    with tempfile.TemporaryDirectory(prefix="sscan-") as tmp:
        out = Path(tmp) / "ruff.json"
        try:
            command = _module_command("ruff")
        except ScanIncomplete as exc:
            return SourceScan("lint", False, str(exc), incomplete=True)
        # --force-exclude: files given by name still obey the config's excludes.
        args = [*command, "check", "--no-cache", "--force-exclude", "--exit-zero", "--output-format", "json",
                "--output-file", str(out), *(["--config", str(config)] if config else ["--isolated"]), "--", *paths]
        result = run(args, check=False, cwd=files.project_root(settings), timeout=settings.sscan.timeout)
        try:
            report = json.loads(out.read_text() or "[]")
        except (OSError, ValueError):
            report = None
    if result.returncode != 0 or not isinstance(report, list):
        return SourceScan("lint", False, f"ruff could not run: {_condensed(result.output)}", incomplete=True)
    findings = tuple(
        f"{display(Path(item['filename']))}:{(item.get('location') or {}).get('row', '?')}: "
        f"{item.get('code') or 'syntax'} {item.get('message', '')}"
        for item in report
    )
    if findings:
        return SourceScan("lint", False, f"{len(findings)} findings in {count} Python files", findings)
    return SourceScan("lint", True, f"{count} Python files, no findings")


def _scan_bandit(settings: Settings, found: Inputs) -> SourceScan:
    paths = list(found.files)
    count = len(paths)
    if not paths:
        return SourceScan("bandit", True, "no Python files")
    config = files.bandit_config(settings)
    with tempfile.TemporaryDirectory(prefix="sscan-") as tmp:
        out = Path(tmp) / "bandit.json"
        try:
            command = _module_command("bandit")
        except ScanIncomplete as exc:
            return SourceScan("bandit", False, str(exc), incomplete=True)
        # -ll -ii: medium severity and medium confidence or higher.
        args = [*command, "-q", "-ll", "-ii", "-f", "json", "-o", str(out),
                *(["-c", str(config)] if config else []), *paths]
        result = run(args, check=False, cwd=files.project_root(settings), timeout=settings.sscan.timeout)
        try:
            report = json.loads(out.read_text())
        except (OSError, ValueError):
            report = None
    if result.returncode not in (0, 1) or not isinstance(report, dict):
        return SourceScan("bandit", False, f"bandit could not run: {_condensed(result.output)}", incomplete=True)
    findings = [
        f"{display(Path(item['filename']))}:{item.get('line_number', '?')}: {item.get('test_id', '?')} "
        f"{item.get('issue_text', '').strip()} (severity {item.get('issue_severity', '?')}, "
        f"confidence {item.get('issue_confidence', '?')})"
        for item in report.get("results") or []
    ]
    findings += [f"{display(Path(e.get('filename', '?')))}: bandit could not scan it: {e.get('reason', '')}"
                 for e in report.get("errors") or []]
    if findings:
        return SourceScan("bandit", False, f"{len(findings)} findings in {count} Python files", tuple(findings))
    return SourceScan("bandit", True, f"{count} Python files, no findings")


# -- deps ------------------------------------------------------------------------------------------

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

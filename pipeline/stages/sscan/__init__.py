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
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline import records
from pipeline.errors import PipelineError, ScanIncomplete
from pipeline.hashing import FileHasher
from pipeline.settings import Settings
from pipeline.stages import sscan_files as files
from pipeline.stages.results import Freshness
from pipeline.stages.sscan.bandit import _scan_bandit
from pipeline.stages.sscan.deps import _scan_deps
from pipeline.stages.sscan.lint import _scan_lint
from pipeline.stages.sscan.outcome import Inputs, ScanFailed, SourceScan, SscanSummary
from pipeline.stages.sscan.tool_run import _PACKAGES
from pipeline.stages.sscan.yaml_files import _scan_yaml
from pipeline.yamlfile import display

log = logging.getLogger(__name__)

SCANNERS = ("yaml", "lint", "bandit", "deps")
_MODULES = {"lint": "ruff", "bandit": "bandit", "deps": "pip_audit"}


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


def scanner_freshness(settings: Settings, hasher: FileHasher, scanner: str) -> Freshness:
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
            fresh = scanner_freshness(settings, hasher, scanner)
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

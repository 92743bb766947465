"""Offline matching of an image's package inventory against an OSV advisory database.

The database is a directory of OSV JSON files (such as an extracted ecosystem
export). Versions compare by each ecosystem's own rules: Debian's (python-debian)
and PEP 440 (packaging).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.debian_support import Version as DebVersion
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as PyVersion

from pipeline.errors import ConfigError
from pipeline.findings.model import Finding, normalise_severity, order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    ecosystem: str  # "Debian:12", "Ubuntu:24.04" or "PyPI"
    name: str
    version: str
    source: str = ""  # dpkg: the source package, when its name differs from the binary's
    where: str = ""  # e.g. the Python environment's prefix
    source_version: str = ""  # dpkg: the source's version, when it differs (a binNMU: "2.36-9+b1" from "2.36-9")


DPKG_ECOSYSTEMS = ("Debian", "Ubuntu")  # whose OSV advisories name source packages, with source versions


@dataclass(frozen=True)
class _Target:
    """What advisories are looked up for: a package, or (dpkg) a source package with its installed binaries."""

    ecosystem: str
    name: str
    version: str
    where: str = ""
    binaries: tuple[str, ...] = ()


def _targets(packages: Iterable[Package]) -> list[_Target]:
    """dpkg binaries grouped by source package (name and version); every other package as itself."""
    sources: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    out: list[_Target] = []
    for pkg in packages:
        if pkg.ecosystem.split(":", 1)[0] in DPKG_ECOSYSTEMS:
            key = (pkg.ecosystem, pkg.source or pkg.name, pkg.source_version or pkg.version)
            sources[key].append(f"{pkg.name} {pkg.version}")
        else:
            out.append(_Target(pkg.ecosystem, pkg.name, pkg.version, pkg.where))
    for (ecosystem, name, version), binaries in sources.items():
        out.append(_Target(ecosystem, name, version, binaries=tuple(sorted(binaries))))
    return out


def _key(ecosystem: str, name: str) -> tuple[str, str]:
    base = ecosystem.split(":", 1)[0]
    return base, str(canonicalize_name(name)) if base == "PyPI" else name.lower()


def _comparator(ecosystem: str) -> Callable[[str], Any] | None:
    base = ecosystem.split(":", 1)[0]
    if base == "PyPI":
        return PyVersion
    if base in {"Debian", "Ubuntu"}:
        return DebVersion
    return None


class OsvDatabase:
    """Advisories indexed by (ecosystem, package name)."""

    def __init__(self, advisories: Iterable[dict[str, Any]]) -> None:
        self.index: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        self.count = 0
        for adv in advisories:
            self.count += 1
            for affected in adv.get("affected") or []:
                pkg = affected.get("package") or {}
                if pkg.get("ecosystem") and pkg.get("name"):
                    self.index[_key(pkg["ecosystem"], pkg["name"])].append((adv, affected))

    @classmethod
    def load(cls, directory: Path) -> OsvDatabase:
        """Read every *.json under ``directory``.

        Raises:
            ConfigError: the directory is missing or holds no advisory.
        """
        if not directory.is_dir():
            raise ConfigError(f"scan.osv: {directory} is not a directory of OSV JSON files")
        db = cls(_read_all(directory.rglob("*.json")))
        if not db.count:
            raise ConfigError(f"scan.osv: no OSV advisories (*.json) under {directory}")
        log.info("osv: %d advisories from %s", db.count, directory)
        return db

    def match(self, packages: Iterable[Package]) -> list[Finding]:
        """Findings for the packages, in the usual order (severity, id, package).

        Debian and Ubuntu advisories name source packages and source versions, so dpkg
        binaries are matched through their source; each finding lists the binaries installed.
        """
        findings: dict[tuple[str, str, str], Finding] = {}
        for target in _targets(packages):
            for adv, affected in self.index.get(_key(target.ecosystem, target.name), []):
                if not _ecosystem_applies(affected["package"]["ecosystem"], target.ecosystem):
                    continue
                fixed = affects(affected, target.version, target.ecosystem)
                if fixed is None:
                    continue
                finding = _finding(adv, affected, target, fixed)
                findings.setdefault((finding.id, target.name, target.where), finding)
        return sorted(findings.values(), key=order)


def _read_all(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in sorted(paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("osv: skipping %s: %s", path, exc)
            continue
        if isinstance(data, dict) and data.get("id"):
            yield data


def _ecosystem_applies(advisory: str, image: str) -> bool:
    """"Debian:12" applies to a Debian 12 image; a bare "Debian" to any; releases must agree when both are given."""
    a_base, _, a_rel = advisory.partition(":")
    i_base, _, i_rel = image.partition(":")
    return a_base == i_base and (not a_rel or not i_rel or a_rel == i_rel)


def affects(affected: dict[str, Any], version: str, ecosystem: str) -> str | None:
    """None when ``version`` is not affected; otherwise the fixed version ("" when none is known)."""
    if version in (affected.get("versions") or []):
        return _first_fixed(affected, version, ecosystem) or ""
    parse = _comparator(ecosystem)
    if parse is None:
        return None
    try:
        current = parse(version)
    except (InvalidVersion, ValueError):
        return None
    for rng in affected.get("ranges") or []:
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        if _in_range(rng.get("events") or [], current, parse):
            return _first_fixed(affected, version, ecosystem) or ""
    return None


def _in_range(events: list[dict[str, str]], current: Any, parse: Callable[[str], Any]) -> bool:
    """OSV semantics: sorted events; introduced opens, fixed (exclusive) / last_affected (inclusive) close."""
    def when(value: str) -> Any:
        return None if value == "0" else parse(value)

    affected = False
    for event in _sorted_events(events, parse):
        kind, value = next(iter(event.items()))
        point = when(value)
        if kind == "introduced":
            if point is None or current >= point:
                affected = True
        elif kind == "fixed":
            if current >= point:
                affected = False
        elif kind == "last_affected":
            if current > point:
                affected = False
    return affected


def _sorted_events(events: list[dict[str, str]], parse: Callable[[str], Any]) -> list[dict[str, str]]:
    def order(event: dict[str, str]) -> tuple[int, Any]:
        kind, value = next(iter(event.items()))
        if value == "0":
            return (0, 0)
        try:
            return (1, parse(value))
        except (InvalidVersion, ValueError):
            return (2, 0)

    usable = [e for e in events if len(e) == 1 and next(iter(e)) in ("introduced", "fixed", "last_affected")]
    try:
        return sorted(usable, key=order)
    except TypeError:
        return usable


def _first_fixed(affected: dict[str, Any], version: str, ecosystem: str) -> str:
    parse = _comparator(ecosystem)
    fixes = [e["fixed"] for r in affected.get("ranges") or [] for e in r.get("events") or [] if "fixed" in e]
    if parse is None:
        return fixes[0] if fixes else ""
    try:
        current = parse(version)
        later = sorted((parse(f), f) for f in fixes if parse(f) > current)
    except (InvalidVersion, ValueError, TypeError):
        return fixes[0] if fixes else ""
    return later[0][1] if later else ""


def _finding(adv: dict[str, Any], affected: dict[str, Any], pkg: _Target, fixed: str) -> Finding:
    aliases = tuple(a for a in adv.get("aliases") or [] if isinstance(a, str))
    cves = [a for a in (adv["id"], *aliases) if a.upper().startswith("CVE-")]
    primary = cves[0] if cves else adv["id"]
    others = tuple(a for a in (adv["id"], *aliases) if a != primary)
    return Finding(
        id=primary,
        severity=_severity(adv, affected),
        package=pkg.name,
        installed=pkg.version,
        fixed=fixed,
        source="osv",
        aliases=others,
        notes=(pkg.where,) if pkg.where else (),
        binaries=pkg.binaries,
    )


def _severity(adv: dict[str, Any], affected: dict[str, Any]) -> str:
    for holder in (affected.get("ecosystem_specific") or {}, affected.get("database_specific") or {},
                   adv.get("database_specific") or {}):
        if holder.get("severity"):
            return normalise_severity(holder["severity"])
    for item in adv.get("severity") or []:
        score = str(item.get("score", ""))
        try:
            value = float(score)
        except ValueError:
            continue
        return "CRITICAL" if value >= 9 else "HIGH" if value >= 7 else "MEDIUM" if value >= 4 else "LOW"
    return "UNDEFINED"

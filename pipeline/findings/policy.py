"""The scan policy: minimum severity, the gate, and an ignore list whose entries expire."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.findings.model import Finding, at_least, order
from pipeline.section import Section
from pipeline.yamlfile import display


@dataclass(frozen=True)
class IgnoreEntry:
    id: str
    reason: str
    expires: dt.date | None
    package: str | None = None

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and self.expires < today

    def matches(self, finding: Finding) -> bool:
        ids = {finding.id.upper(), *(a.upper() for a in finding.aliases)}
        return self.id.upper() in ids and (self.package is None or self.package in finding.packages)


def load_ignores(path: Path | None, load: Callable[[Path], Any] | None = None) -> list[IgnoreEntry]:
    """Read the ignore file: a list of {id, reason, expires, package?}; ``load`` parses it (default: load_yaml).

    Raises:
        ConfigError: naming the file, the entry and the key.
    """
    if path is None:
        return []
    if load is None:
        from pipeline.yamlparse import load_yaml as load
    data = load(path)
    if data is None:
        return []
    if isinstance(data, dict) and "ignore" in data:
        data = data["ignore"]
    if not isinstance(data, list):
        raise ConfigError(f"{display(path)}: expected a list of entries with id, reason and expires")
    entries = []
    for index, item in enumerate(data):
        sec = Section(path, item, f"[{index}]")
        sec.reject_unknown(["id", "reason", "expires", "package"])
        expires = sec.raw("expires")
        if expires is not None and not isinstance(expires, dt.date):
            try:
                expires = dt.date.fromisoformat(str(expires))
            except ValueError:
                raise sec.error(f"key '[{index}].expires' must be a date like 2027-01-31, not {expires!r}", "expires") from None
        if isinstance(expires, dt.datetime):
            expires = expires.date()
        entries.append(IgnoreEntry(sec.req("id"), sec.req("reason"), expires, sec.str("package")))
    return entries


@dataclass(frozen=True)
class Verdict:
    kept: tuple[Finding, ...]  # at or above the minimum severity (ignored ones marked, still listed)
    failing: tuple[Finding, ...]  # kept, not ignored, in a failing severity
    expired: tuple[IgnoreEntry, ...]
    unused: tuple[IgnoreEntry, ...]  # ignore entries that matched no finding

    @property
    def passed(self) -> bool:
        return not self.failing


def relevant(finding: Finding, min_severity: str, fail_on: Iterable[str]) -> bool:
    """Whether the policy keeps a finding: at least ``min_severity``, or in a failing severity."""
    return at_least(finding.severity, min_severity) or finding.severity in {s.upper() for s in fail_on}


def judge(
    findings: Iterable[Finding], *, min_severity: str, fail_on: Iterable[str], ignores: list[IgnoreEntry],
    today: dt.date | None = None,
) -> Verdict:
    """Apply the policy: drop findings below ``min_severity``, mark ignored ones, decide the gate.

    ``kept`` and ``failing`` are in the one order of findings (severity, id, package).
    """
    today = today or dt.date.today()
    fail_on = {s.upper() for s in fail_on}
    kept, failing, used = [], [], set()
    expired = [e for e in ignores if e.expired(today)]
    for finding in sorted(findings, key=order):
        if not relevant(finding, min_severity, fail_on):
            continue
        for entry in ignores:
            if entry.matches(finding):
                used.add(entry)
                if not entry.expired(today):
                    finding = finding.with_(ignored=entry.reason)
                    break
        kept.append(finding)
        if not finding.ignored and finding.severity in fail_on:
            failing.append(finding)
    unused = [e for e in ignores if e not in used]
    return Verdict(tuple(kept), tuple(failing), tuple(expired), tuple(unused))

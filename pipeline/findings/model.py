"""Findings and severities."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_ALIASES = {"MODERATE": "MEDIUM", "IMPORTANT": "HIGH", "NEGLIGIBLE": "LOW", "INFO": "INFORMATIONAL", "UNKNOWN": "UNDEFINED"}


def normalise_severity(value: Any) -> str:
    text = str(value or "").strip().upper()
    text = _ALIASES.get(text, text)
    return text if text in SEVERITIES else "UNDEFINED"


def rank(severity: str) -> int:
    """0 for CRITICAL … 5 for UNDEFINED: lower is worse."""
    return SEVERITIES.index(normalise_severity(severity))


def at_least(severity: str, minimum: str) -> bool:
    return rank(severity) <= rank(minimum)


def order(finding: Finding) -> tuple[int, str, str]:
    """The one order of findings everywhere (console, gate message, report): severity, then id, then package."""
    return (rank(finding.severity), finding.id, finding.package)


@dataclass(frozen=True)
class Finding:
    id: str  # CVE-… when the advisory has one, else the advisory's own id
    severity: str
    package: str
    installed: str = ""
    fixed: str = ""
    source: str = ""  # ecr | osv
    aliases: tuple[str, ...] = ()
    status: str = ""  # Ubuntu's status for the configured release, e.g. "noble: needed"
    ignored: str = ""  # the ignore entry's reason when ignored
    notes: tuple[str, ...] = field(default_factory=tuple)
    binaries: tuple[str, ...] = ()  # Debian/Ubuntu: the installed binary packages ("libc6 2.36-9") of ``package``, a source

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package name the finding is about: the package itself and its binaries' names."""
        return (self.package, *(b.split(" ", 1)[0] for b in self.binaries))

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(i for i in (self.id, *self.aliases) if i.upper().startswith("CVE-"))

    def with_(self, **changes: Any) -> Finding:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "severity": self.severity,
            "package": self.package,
            "installed": self.installed,
            "fixed": self.fixed or None,
            "status": self.status or None,
            "source": self.source,
        }
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.binaries:
            out["binaries"] = list(self.binaries)
        if self.ignored:
            out["ignored"] = self.ignored
        return out

"""What a source scanner reads (Inputs) and what it found (SourceScan, SscanSummary)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError
from pipeline.hashing import sha256_text

RECORD_VERSION = 1


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

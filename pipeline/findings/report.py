"""The scan report (YAML, machine readable) and its console summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipeline.findings.model import SEVERITIES, Finding, order
from pipeline.findings.policy import IgnoreEntry, Verdict


def ordered(verdict: Verdict) -> list[Finding]:
    """Failing findings first, then the rest; each part by severity, id and package (as the gate message)."""
    failing = set(verdict.failing)
    return sorted(verdict.kept, key=lambda f: (f not in failing, *order(f)))


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    c = Counter(f.severity for f in findings if not f.ignored)
    return {s: c.get(s, 0) for s in SEVERITIES if c.get(s, 0) or s in ("CRITICAL", "HIGH", "MEDIUM", "LOW")}


def _entry(e: IgnoreEntry) -> dict[str, Any]:
    return {"id": e.id, "reason": e.reason, "expires": e.expires.isoformat() if e.expires else None, "package": e.package}


def document(header: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    findings = ordered(verdict)
    return {
        **header,
        "passed": verdict.passed,
        "counts": counts(findings),
        "ignored": sum(1 for f in findings if f.ignored),
        "failing": [f.id for f in verdict.failing],
        "findings": [f.as_dict() for f in findings],
        "ignore_file": {
            "expired": [_entry(e) for e in verdict.expired],
            "unknown_ids": [_entry(e) for e in verdict.unused],
        },
    }


def summary(title: str, verdict: Verdict, fail_on: Sequence[str], limit: int = 25) -> str:
    findings = ordered(verdict)
    failing = set(verdict.failing)
    lines = [title]
    tally = counts(findings)
    ignored = sum(1 for f in findings if f.ignored)
    lines.append("  " + "  ".join(f"{s} {n}" for s, n in tally.items()) + (f"  ({ignored} ignored)" if ignored else ""))
    for f in findings[:limit]:
        mark = "FAIL" if f in failing else "ign " if f.ignored else "    "
        fix = f" -> {f.fixed}" if f.fixed else ""
        binaries = f" (binaries: {', '.join(b.split(' ', 1)[0] for b in f.binaries)})" if f.binaries else ""
        extra = f"  [{f.status}]" if f.status else ""
        why = f"  (ignored: {f.ignored})" if f.ignored else ""
        lines.append(f"  {mark} {f.severity:<8} {f.id:<20} {f.package} {f.installed}{fix}{binaries}{extra}{why}")
    if len(findings) > limit:
        lines.append(f"  … {len(findings) - limit} more in the report")
    for e in verdict.expired:
        lines.append(f"  ignore entry {e.id} expired on {e.expires}: it no longer ignores")
    for e in verdict.unused:
        lines.append(f"  ignore entry {e.id} matches no finding")
    if verdict.passed:
        lines.append(f"gate: passed (nothing unignored at {'/'.join(fail_on)})")
    else:
        lines.append(f"gate: FAILED ({len(verdict.failing)} unignored findings at {'/'.join(fail_on)})")
    return "\n".join(lines)


def gate_failure(verdict: Verdict, fail_on: Sequence[str]) -> str:
    """The gate's one-line verdict; its "first" is the first FAIL line of :func:`summary`."""
    first = verdict.failing[0]
    return (f"gate failed: {len(verdict.failing)} unignored findings at {'/'.join(fail_on)} "
            f"(first: {first.severity} {first.id} in {first.package})")

"""The record of one run for machines: build/reports/last-run.json, and GitHub's job summary.

Both hold the same rows as the console's summary table: every stage of the run
with its result, the reason it ran (or why it is current), when it started,
how long it took, and for image stages the image ID and size.  When
``GITHUB_STEP_SUMMARY`` names a file (GitHub Actions sets it), the table is
appended there as Markdown.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.files import write_text

log = logging.getLogger(__name__)

REPORT = Path("reports") / "last-run.json"
REPORT_VERSION = 1


@dataclass(frozen=True)
class StageRow:
    stage: str
    result: str  # built | pulled | ran | up to date | FAILED: the summary table's words
    reason: str  # why it ran (all reasons), or why it is current
    why: str  # the summary table's short form ("" for a stage that did not run)
    started: str | None  # UTC, as in build/runs/
    seconds: float | None
    image: str | None
    size: int | None
    size_text: str  # the summary table's "image size" cell


def write_json(build_dir: Path, rows: Sequence[StageRow], *, started: str, finished: str, totals: str) -> Path:
    """Write build/reports/last-run.json (replaced by every run that executes tasks)."""
    path = build_dir / REPORT
    data = {
        "version": REPORT_VERSION,
        "started": started,
        "finished": finished,
        "totals": totals,
        "stages": [asdict(row) for row in rows],
    }
    write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def markdown(rows: Sequence[StageRow], totals: str) -> str:
    """The summary table as a Markdown table (GitHub's job summary)."""
    lines = [f"### doit: {totals}", "", "| stage | result | time | image size | why |", "|---|---|---:|---|---|"]
    for row in rows:
        seconds = f"{row.seconds:.1f} s" if row.seconds is not None else "-"
        cells = (f"`{row.stage}`", row.result, seconds, row.size_text, row.why)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def append_step_summary(rows: Sequence[StageRow], totals: str) -> Path | None:
    """Append the Markdown table to $GITHUB_STEP_SUMMARY when it is set; a failure to write is only logged."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown(rows, totals))
    except OSError as exc:
        log.warning("cannot append the run summary to GITHUB_STEP_SUMMARY %s: %s", target, exc)
        return None
    return Path(target)

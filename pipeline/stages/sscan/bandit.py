"""The bandit scanner: medium severity and confidence or higher."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings
from pipeline.stages import sscan_files as files
from pipeline.stages.sscan.outcome import Inputs, SourceScan
from pipeline.stages.sscan.tool_run import _condensed, run_json_tool
from pipeline.yamlfile import display


def _scan_bandit(settings: Settings, found: Inputs) -> SourceScan:
    paths = list(found.files)
    count = len(paths)
    if not paths:
        return SourceScan("bandit", True, "no Python files")
    config = files.bandit_config(settings)
    ran = run_json_tool(settings, "bandit", lambda command, out: [
        # -ll -ii: medium severity and medium confidence or higher.
        *command, "-q", "-ll", "-ii", "-f", "json", "-o", str(out), *(["-c", str(config)] if config else []), *paths])
    if isinstance(ran, str):
        return SourceScan("bandit", False, ran, incomplete=True)
    result, report = ran
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

"""The lint scanner: ruff over the project's and deployments' Python."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings
from pipeline.stages import sscan_files as files
from pipeline.stages.sscan.outcome import Inputs, SourceScan
from pipeline.stages.sscan.tool_run import _condensed, run_json_tool
from pipeline.yamlfile import display


def _scan_lint(settings: Settings, found: Inputs) -> SourceScan:
    paths = list(found.files)
    count = len(paths)
    if not paths:
        return SourceScan("lint", True, "no Python files")
    config = files.ruff_config(settings)
    ran = run_json_tool(settings, "ruff", lambda command, out: [
        # --force-exclude: files given by name still obey the config's excludes.
        *command, "check", "--no-cache", "--force-exclude", "--exit-zero", "--output-format", "json",
        "--output-file", str(out), *(["--config", str(config)] if config else ["--isolated"]), "--", *paths], "[]")
    if isinstance(ran, str):
        return SourceScan("lint", False, ran, incomplete=True)
    result, report = ran
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

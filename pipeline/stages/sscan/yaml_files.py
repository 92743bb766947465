"""The yaml scanner: every YAML file of the project and deployments/ loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline import yamlparse
from pipeline.settings import Settings
from pipeline.stages.sscan.outcome import Inputs, SourceScan
from pipeline.yamlfile import display


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
        yamlparse.parse_all(text)  # a key given twice is a problem too: PyYAML alone keeps the last one
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        return f"{display(path)}{where}: {exc.problem or exc.context or 'invalid YAML'}"
    except yaml.YAMLError as exc:
        return f"{display(path)}: {exc}"
    return None

"""Task generators for scan:NAME and clean_registry:NAME."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.stages.clean import clean_registry
from pipeline.stages.scan import backend_of, scan, scan_freshness
from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.context import Context


@stage_action(lambda name: f"scan:{name}")
def scan_action(ctx: Context, name: str) -> Any:
    return scan(ctx.settings, ctx.engine, name)


@stage_action(lambda name, **_: f"clean_registry:{name}")
def clean_action(ctx: Context, name: str, severity: str = "HIGH", yes: bool = False) -> Any:
    return clean_registry(ctx.settings, name, severity, yes)


def scan_tasks() -> Iterator[dict[str, Any]]:
    ctx = context.get()
    yield {"basename": "scan", "name": None, "doc": "scan every selected deployment's image"}
    for dep in ctx.settings.deployments:
        deps = [f"manifest:{dep.name}"]
        if backend_of(ctx.settings, dep) == "ecr":
            deps.append(f"push:{dep.name}")
        yield {
            "basename": "scan",
            "name": dep.name,
            "doc": f"vulnerability scan of {dep.name} ({backend_of(ctx.settings, dep)}): gate and report",
            "actions": [(scan_action, [dep.name])],
            "task_dep": deps,
            "uptodate": [StageCheck(f"scan:{dep.name}", _fresh, dep.name)],
            "verbosity": 2,
        }


def clean_registry_tasks() -> Iterator[dict[str, Any]]:
    ctx = context.get()
    params = [
        {"name": "severity", "long": "severity", "default": "HIGH", "help": "minimum severity to delete"},
        {"name": "yes", "long": "yes", "type": bool, "default": False, "help": "delete (default: dry run)"},
    ]
    yield {"basename": "clean_registry", "name": None, "doc": "untagged vulnerable images in each ECR repository"}
    for dep in ctx.settings.deployments:
        yield {
            "basename": "clean_registry",
            "name": dep.name,
            "doc": f"list (or with --yes delete) untagged images of {dep.name} with findings at --severity or worse",
            "actions": [(clean_action, [dep.name])],
            "params": params,
            "uptodate": [False],
            "verbosity": 2,
        }


def _fresh(ctx: Context, name: str) -> Any:
    return scan_freshness(ctx.settings, ctx.engine, name)

"""Task generators for scan:NAME and clean_registry:NAME."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.settings import Deployment
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context


@stage_action(lambda name: f"scan:{name}")
def scan_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.scan import scan  # imported when used: the scanners' imports are not light

    return scan(ctx.settings, ctx.engine, name)


@stage_action(lambda name, **_: f"clean_registry:{name}")
def clean_action(ctx: Context, name: str, severity: str = "HIGH", yes: bool = False) -> Any:
    from pipeline.stages.clean import clean_registry

    return clean_registry(ctx.settings, name, severity, yes)


def scan_tasks() -> Iterator[dict[str, Any]]:
    def make(ctx: Context, dep: Deployment) -> dict[str, Any]:
        backend = ctx.settings.scan.backend_for(dep.registry)
        return {
            "doc": f"vulnerability scan of {dep.name} ({backend}): gate and report",
            "actions": [(scan_action, [dep.name])],
            "task_dep": [f"manifest:{dep.name}"] + ([f"push:{dep.name}"] if backend == "ecr" else []),
            "uptodate": [StageCheck(f"scan:{dep.name}", _fresh, dep.name)],
        }

    return per_deployment("scan", "scan every selected deployment's image", make)


def clean_registry_tasks() -> Iterator[dict[str, Any]]:
    params = [
        {"name": "severity", "long": "severity", "default": "HIGH", "help": "minimum severity to delete"},
        {"name": "yes", "long": "yes", "type": bool, "default": False, "help": "delete (default: dry run)"},
    ]
    return per_deployment("clean_registry", "untagged vulnerable images in each ECR repository", lambda ctx, dep: {
        "doc": f"list (or with --yes delete) untagged images of {dep.name} with findings at --severity or worse",
        "actions": [(clean_action, [dep.name])],
        "params": params,
        "uptodate": [False],
    })


def _fresh(ctx: Context, name: str) -> Any:
    from pipeline.stages.scan import scan_freshness

    return scan_freshness(ctx.settings, ctx.engine, name)

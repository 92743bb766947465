"""Task generators for the stages that look into a built mission image: test, drift, freeze, manifest, history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.stages.drift import drift, drift_freshness
from pipeline.stages.freeze import freeze, freeze_freshness
from pipeline.stages.history import history
from pipeline.stages.manifest import manifest_freshness, manifest_path, write_manifest
from pipeline.stages.results import Freshness
from pipeline.stages.testing import passed_freshness, run_test
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context
from pipeline.yamlfile import display

TaskDict = dict[str, Any]


# -- actions: module-level so that doit's process pool can pickle them -------------------

@stage_action(lambda name: f"test:{name}")
def test_action(ctx: Context, name: str) -> Any:
    return run_test(ctx.settings, ctx.engine, name)


@stage_action(lambda name: f"freeze:{name}")
def freeze_action(ctx: Context, name: str) -> Any:
    return freeze(ctx.settings, ctx.engine, name)


@stage_action(lambda name: f"drift:{name}")
def drift_action(ctx: Context, name: str) -> Any:
    return drift(ctx.settings, ctx.engine, name)


@stage_action(lambda name: f"manifest:{name}")
def manifest_action(ctx: Context, name: str) -> Any:
    return write_manifest(ctx.settings, ctx.engine, name)


@stage_action(lambda name, full: f"history:{name}")
def _history(ctx: Context, name: str, full: bool) -> Any:
    return history(ctx.settings, ctx.engine, name, full=full)


def history_action(name: str, full: bool) -> Any:
    """doit passes the ``--full`` option by keyword; the boundary takes positional arguments only."""
    return _history(name, bool(full))


# -- up-to-date checks --------------------------------------------------------------------------

def _test_fresh(ctx: Context, name: str) -> Freshness:
    return passed_freshness(ctx.settings, ctx.engine, name)


def _freeze_fresh(ctx: Context, name: str) -> Freshness:
    return freeze_freshness(ctx.settings, ctx.engine, name)


def _drift_fresh(ctx: Context, name: str) -> Freshness:
    return drift_freshness(ctx.settings, ctx.engine, name)


def _manifest_fresh(ctx: Context, name: str) -> Freshness:
    return manifest_freshness(ctx.settings, ctx.engine, name)


# -- generators -----------------------------------------------------------------------------------

def test_tasks() -> Iterator[TaskDict]:
    return per_deployment("test", "run every selected deployment's test command", lambda ctx, dep: {
        "doc": f"run {dep.test} in a fresh container from {ctx.mission(dep.name).ref} (reruns when the image changes)",
        "actions": [(test_action, [dep.name])],
        "task_dep": [f"build:{dep.name}"],
        "uptodate": [StageCheck(f"test:{dep.name}", _test_fresh, dep.name)],
    })


def drift_tasks() -> Iterator[TaskDict]:
    return per_deployment("drift", "report how each image's pins differ from deployments/NAME/env-frozen/ (writes nothing)", lambda ctx, dep: {
        "doc": f"compare {dep.freeze} in the image with deployments/{dep.name}/env-frozen/ and print the drift "
               f"(writes nothing; `doit freeze:{dep.name}` writes)",
        "actions": [(drift_action, [dep.name])],
        "task_dep": [f"build:{dep.name}"],
        "uptodate": [StageCheck(f"drift:{dep.name}", _drift_fresh, dep.name)],
    })


def freeze_tasks() -> Iterator[TaskDict]:
    return per_deployment("freeze", "WRITES deployments/NAME/env-frozen/ from the image's pins (explicit only: plain doit just reports drift)", lambda ctx, dep: {
        "doc": f"WRITE deployments/{dep.name}/env-frozen/ from {dep.freeze} in the image (floating mode; "
               "never part of plain doit or image_all)",
        "actions": [(freeze_action, [dep.name])],
        "task_dep": [f"build:{dep.name}"],
        "uptodate": [StageCheck(f"freeze:{dep.name}", _freeze_fresh, dep.name)],
    })


def manifest_tasks() -> Iterator[TaskDict]:
    return per_deployment("manifest", "write every selected deployment's image manifest", lambda ctx, dep: {
        "doc": f"write {display(manifest_path(ctx.settings, dep.name))}: image, inputs, parents, OS, packages",
        "actions": [(manifest_action, [dep.name])],
        "task_dep": [f"build:{dep.name}"],
        "uptodate": [StageCheck(f"manifest:{dep.name}", _manifest_fresh, dep.name)],
    })


def history_tasks() -> Iterator[TaskDict]:
    full = {"name": "full", "long": "full", "type": bool, "default": False,
            "help": "show each layer's whole instruction instead of shortening it"}
    return per_deployment("history", "print every selected deployment's layer table", lambda ctx, dep: {
        "doc": f"print the layers of {ctx.mission(dep.name).ref}, newest first, with sizes (--full: whole instructions)",
        "actions": [(history_action, [dep.name])],
        "params": [full],
        "uptodate": [False],
    })

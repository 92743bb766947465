"""The chain stage's own generator: one task per shared layer, each after its parent and certs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.plan import chain_specs
from pipeline.stages.image_check import image_freshness
from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


@stage_action(lambda stage: stage)
def layer_action(ctx: Context, stage: str) -> Any:
    # (not named `task`: doit would inject its Task object into a parameter of that name)
    from pipeline.stages.images import build_image  # the build side: only when the stage runs

    return build_image(ctx.settings, ctx.engine, ctx.layer(stage), ctx.hasher)


def chain_tasks() -> Iterator[TaskDict]:
    ctx = context.get()
    yield {"basename": "chain", "name": None, "doc": "every shared layer, in order"}
    for spec in chain_specs(ctx.settings):
        yield {
            "basename": "chain",
            "name": spec.task.split(":", 1)[1],
            "doc": f"shared layer {spec.ref} FROM {spec.parent_ref}",
            "actions": [(layer_action, [spec.task])],
            "task_dep": [spec.parent_task, "certs"],
            "uptodate": [StageCheck(spec.task, _layer_check, spec.task)],
            "verbosity": 2,
        }


def _layer_check(ctx: Context, task: str) -> Any:
    return image_freshness(ctx.settings, ctx.engine, ctx.layer(task), ctx.hasher)

"""Task generators for the core DAG: certs, root, chain:NAME, dockerfile:DEPLOYMENT, build:DEPLOYMENT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.plan import chain_specs
from pipeline.settings import Deployment
from pipeline.stages.certs import certs_current, write_certs
from pipeline.stages.dockerfile import dockerfile_current, write_dockerfile
from pipeline.stages.images import build_image, freshness
from pipeline.stages.root import build_root, root_freshness
from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


# -- actions: module-level so that doit's process pool can pickle them -------------------

@stage_action(lambda: "certs")
def certs_action(ctx: Context) -> Any:
    return write_certs(ctx.settings)


@stage_action(lambda: "root")
def root_action(ctx: Context) -> Any:
    return build_root(ctx.settings, ctx.engine, ctx.hasher)


@stage_action(lambda stage: stage)
def layer_action(ctx: Context, stage: str) -> Any:
    # (not named `task`: doit would inject its Task object into a parameter of that name)
    return build_image(ctx.settings, ctx.engine, ctx.layer(stage), ctx.hasher)


@stage_action(lambda name: f"dockerfile:{name}")
def dockerfile_action(ctx: Context, name: str) -> Any:
    return write_dockerfile(ctx.settings, ctx.mission(name))


@stage_action(lambda name: f"build:{name}")
def build_action(ctx: Context, name: str) -> Any:
    return build_image(ctx.settings, ctx.engine, ctx.mission(name), ctx.hasher)


# -- generators -------------------------------------------------------------------------------

def certs_task() -> TaskDict:
    context.get()
    return {
        "doc": "copy the host CA bundle to certs.target (reruns only when its bytes change)",
        "actions": [(certs_action, [])],
        "uptodate": [StageCheck("certs", lambda c: certs_current(c.settings))],
        "verbosity": 2,
    }


def root_task() -> TaskDict:
    ctx = context.get()
    return {
        "doc": f"the root image {ctx.settings.root_ref} from root.{ctx.settings.root.kind}",
        "actions": [(root_action, [])],
        "uptodate": [StageCheck("root", lambda c: root_freshness(c.settings, c.engine, c.hasher))],
        "verbosity": 2,
    }


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
            "uptodate": [StageCheck(spec.task, _image_fresh, spec.task)],
            "verbosity": 2,
        }


def dockerfile_tasks() -> Iterator[TaskDict]:
    return per_deployment("dockerfile", "render every selected deployment's Dockerfile", lambda ctx, dep: {
        "doc": f"build/dockerfiles/{dep.name}.Dockerfile from its Dockerfile(.custom) and the trailer",
        "actions": [(dockerfile_action, [dep.name])],
        # The model checks the context's sources, so a preparation step that writes them goes first.
        "task_dep": list(dep.task_dep),
        "file_dep": list(dep.file_dep),
        "uptodate": [StageCheck(f"dockerfile:{dep.name}", _dockerfile_fresh, dep.name)],
    })


def build_tasks() -> Iterator[TaskDict]:
    def make(ctx: Context, dep: Deployment) -> TaskDict:
        spec = ctx.mission(dep.name)
        # deployment.yaml's task_dep/file_dep: the user's preparation tasks (their targets are file_dep
        # here, so doit runs them first, and only when their own inputs changed).
        return {
            "doc": f"mission image {spec.ref}",
            "actions": [(build_action, [dep.name])],
            "task_dep": [spec.parent_task, f"dockerfile:{dep.name}", *dep.task_dep],
            "file_dep": list(dep.file_dep),
            "uptodate": [StageCheck(spec.task, _mission_fresh, dep.name)],
        }

    return per_deployment("build", "every selected deployment's mission image", make)


def _image_fresh(ctx: Context, task: str) -> Any:
    return freshness(ctx.settings, ctx.engine, ctx.layer(task), ctx.hasher)


def _mission_fresh(ctx: Context, name: str) -> Any:
    return freshness(ctx.settings, ctx.engine, ctx.mission(name), ctx.hasher)


def _dockerfile_fresh(ctx: Context, name: str) -> Any:
    return dockerfile_current(ctx.settings, ctx.mission(name))

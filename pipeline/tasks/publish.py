"""Task generators for the registry stages and the CI entry point image_all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.stages import publish, release
from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


@dataclass(frozen=True)
class ListResult:
    items: tuple[str, ...]

    def values(self) -> dict[str, Any]:
        return {"items": list(self.items)}


# -- actions ---------------------------------------------------------------------------------------

@stage_action(lambda: "login")
def login_action(ctx: Context) -> Any:
    return ListResult(tuple(publish.login(ctx.settings)))


@stage_action(lambda name: f"push:{name}")
def push_action(ctx: Context, name: str) -> Any:
    return publish.push(ctx.settings, ctx.engine, ctx.settings.deployment(name))


@stage_action(lambda name: f"promote:{name}")
def promote_action(ctx: Context, name: str, source: str = "", target: str = "") -> Any:
    return publish.promote(ctx.settings, ctx.settings.deployment(name), source or None, target or None)


@stage_action(lambda name: f"pull:{name}")
def pull_action(ctx: Context, name: str, reference: str = "", tag: bool = False) -> Any:
    return publish.pull(ctx.settings, ctx.engine, ctx.settings.deployment(name), reference or None, tag=tag)


@stage_action(lambda name: f"delete:{name}")
def delete_action(ctx: Context, name: str, refs: list[str] | None = None, all_tags: bool = False) -> Any:
    words = [r for r in (refs or []) if r != "--"]
    return ListResult(tuple(publish.delete(ctx.settings, ctx.settings.deployment(name), words, all_tags=all_tags)))


@stage_action(lambda: "release")
def release_action(ctx: Context, version: list[str] | None = None) -> Any:
    words = [w for w in (version or []) if w != "--"]
    return release.release(ctx.settings, " ".join(words) or None)


# -- generators ------------------------------------------------------------------------------------

def login_task() -> TaskDict:
    context.get()
    return {
        "doc": "docker login to the registries of the selected deployments (password on stdin)",
        "actions": [(login_action, [])],
        "uptodate": [False],
        "verbosity": 2,
    }


def push_tasks() -> Iterator[TaskDict]:
    return per_deployment("push", "push every selected mission image", lambda ctx, dep: {
        "doc": f"push {dep.name}'s image at its build tag (skipped when the registry already holds it)",
        "actions": [(push_action, [dep.name])],
        "task_dep": [f"build:{dep.name}", f"test:{dep.name}"],
        "uptodate": [StageCheck(f"push:{dep.name}", _push_fresh, dep.name)],
    })


def promote_tasks() -> Iterator[TaskDict]:
    params = [
        {"name": "source", "long": "from", "default": "", "help": "source tag or digest (default: the build tag)"},
        {"name": "target", "long": "to", "default": "", "help": "tag to add (default: the promoted tag)"},
    ]
    return per_deployment("promote", "promote every selected image (registry-side retag)", lambda ctx, dep: {
        "doc": f"tag {dep.name}'s pushed manifest with the promoted tag (--from TAG --to TAG to choose)",
        "actions": [(promote_action, [dep.name])],
        # A signing checkout verifies what it attested before the tag moves (sign.required also gates inside).
        "task_dep": [f"push:{dep.name}", f"scan:{dep.name}"] + ([f"verify:{dep.name}"] if ctx.settings.sign.key else []),
        "params": params,
        "uptodate": [StageCheck(f"promote:{dep.name}", _promote_fresh, dep.name, with_options=True)],
    })


def pull_tasks() -> Iterator[TaskDict]:
    params = [
        {"name": "reference", "long": "ref", "default": "", "help": "tag or sha256 digest (default: build tag)"},
        {"name": "tag", "long": "tag", "type": bool, "default": False,
         "help": "also point the mission tag at the pulled image (a pull by digest or other tag leaves it alone)"},
    ]
    return per_deployment("pull", "pull every selected image", lambda ctx, dep: {
        "doc": f"pull {dep.name}'s image by tag or digest: doit pull:{dep.name} --ref TAG|sha256:… [--tag]",
        "actions": [(pull_action, [dep.name])],
        "params": params,
        "uptodate": [False],
    })


def delete_tasks() -> Iterator[TaskDict]:
    params = [{"name": "all_tags", "long": "all-tags", "type": bool, "default": False,
               "help": "also delete the other tags on the same digest (a generic registry deletes by digest)"}]
    return per_deployment("delete", "delete tags or digests from the registry", lambda ctx, dep: {
        "doc": f"delete tags or digests of {dep.name}: doit delete:{dep.name} [--all-tags] -- TAG|DIGEST …",
        "actions": [(delete_action, [dep.name])],
        "params": params,
        "pos_arg": "refs",
        "uptodate": [False],
    })


def release_task() -> TaskDict:
    context.get()
    return {
        "doc": "tag the promoted images and the git commit: doit release -- v1.2.3 (main branch, in sync)",
        "actions": [(release_action, [])],
        "pos_arg": "version",
        "uptodate": [False],
        "verbosity": 2,
    }


def image_all_tasks() -> Iterator[TaskDict]:
    """CI's entry point: build -> test -> push -> sbom -> attest -> scan -> verify -> promote, one DAG per deployment.

    attest and verify are in it when pipeline.yaml has sign.key (verify also with sign.required).
    """
    from pipeline.tasks.provenance import supply_chain_deps

    return per_deployment("image_all", "build, test, push, sign, scan, verify and promote every selected deployment",
                          lambda ctx, dep: {
        "doc": f"build, test, push, sbom, attest, scan, verify and promote {dep.name}",
        "actions": None,
        "task_dep": [f"push:{dep.name}", *supply_chain_deps(ctx, dep.name), f"promote:{dep.name}"],
    })


def _push_fresh(ctx: Context, name: str) -> Any:
    return publish.push_freshness(ctx.settings, ctx.engine, ctx.settings.deployment(name))


def _promote_fresh(ctx: Context, name: str, source: str = "", target: str = "") -> Any:
    return publish.promote_freshness(ctx.settings, ctx.settings.deployment(name), source or None, target or None)

"""Task generators for patching and squashing.

patch, patch_os, patch_ssl and patch_history run only when asked (``uptodate: False``)
and build nothing first: they work on the image the mission tag holds (or ``--source`` /
``--image``).  crosslink, export, import and squash are keyed on their source image IDs,
so only stale steps rerun; only squash moves the mission tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Deployment
from pipeline.stages.crosslink import crosslink_freshness, crosslink_image
from pipeline.stages.patch import patch_history, patch_image, patch_os, patch_ssl
from pipeline.stages.results import Freshness
from pipeline.stages.squash import (
    export_freshness,
    import_freshness,
    import_image,
    mission_image,
    squash,
    squash_freshness,
    write_archive,
)
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


def _param(name: str, help_text: str, default: str = "", short: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "long": name.replace("_", "-"), "type": str, "default": default,
                            "help": help_text}
    if short:
        spec["short"] = short
    return spec


AUTHOR = _param("author", "who applies the patch (recorded in the image)", short="a")
DESCRIPTION = _param("description", "what the patch does (recorded in the image)", short="m")
SOURCE = _param("source", "the image to patch (default: the deployment's mission image)")
PATHS = _param("paths", "comma-separated directories or globs to crosslink "
                        "(default: /opt/conda, /opt/environments and the Python site-packages directories)")
KEEP = _param("keep_archive", "also write the exported file system to this tar file")


def _paths(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


# -- actions: module-level so that doit's process pool can pickle them -------------------------
# doit passes params by name; never name a parameter task, targets, dependencies or changed.

@stage_action(lambda name, *a, **k: f"patch:{name}")
def patch_action(ctx: Context, name: str, script: str = "", author: str = "", description: str = "",
                 source: str = "") -> Any:
    if not script:
        raise ConfigError(f"give the patch script: doit patch:{name} --script FILE "
                          "--author WHO --description WHAT")
    return patch_image(ctx.settings, ctx.engine, name, Path(script), author, description, source or None)


@stage_action(lambda name, *a, **k: f"patch_os:{name}")
def patch_os_action(ctx: Context, name: str, author: str = "", description: str = "", source: str = "") -> Any:
    return patch_os(ctx.settings, ctx.engine, name, author, description, source or None)


@stage_action(lambda name, *a, **k: f"patch_ssl:{name}")
def patch_ssl_action(ctx: Context, name: str, author: str = "", description: str = "", bundle: str = "",
                     source: str = "") -> Any:
    return patch_ssl(ctx.settings, ctx.engine, name, author, description, Path(bundle) if bundle else None,
                     source or None)


@stage_action(lambda name, *a, **k: f"patch_history:{name}")
def patch_history_action(ctx: Context, name: str, image: str = "") -> Any:
    return patch_history(ctx.settings, ctx.engine, name, image or None)


@stage_action(lambda name, *a, **k: f"crosslink:{name}")
def crosslink_action(ctx: Context, name: str, paths: str = "", dry_run: bool = False) -> Any:
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return crosslink_image(ctx.settings, ctx.engine, name, source, _paths(paths), dry_run=bool(dry_run))


@stage_action(lambda name, *a, **k: f"export:{name}")
def export_action(ctx: Context, name: str, keep_archive: str = "") -> Any:
    return write_archive(ctx.settings, ctx.engine, name, keep_archive)


@stage_action(lambda name, *a, **k: f"import:{name}")
def import_action(ctx: Context, name: str, archive: str = "", keep_archive: str = "") -> Any:
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return import_image(ctx.settings, ctx.engine, name, source, archive=archive, keep_archive=keep_archive)


@stage_action(lambda name, *a, **k: f"squash:{name}")
def squash_action(ctx: Context, name: str, paths: str = "", keep_archive: str = "") -> Any:
    return squash(ctx.settings, ctx.engine, name, _paths(paths), keep_archive)


# -- up-to-date checks --------------------------------------------------------------------------

def _crosslink_fresh(ctx: Context, name: str, paths: str = "", dry_run: bool = False, **_: Any) -> Freshness:
    if dry_run:
        return Freshness(False, "--dry-run always runs")
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return crosslink_freshness(ctx.settings, ctx.engine, source, name, _paths(paths))


def _export_fresh(ctx: Context, name: str, keep_archive: str = "", **_: Any) -> Freshness:
    return export_freshness(ctx.settings, ctx.engine, name, keep_archive)


def _import_fresh(ctx: Context, name: str, archive: str = "", keep_archive: str = "", **_: Any) -> Freshness:
    return import_freshness(ctx.settings, ctx.engine, name, archive, keep_archive)


def _squash_fresh(ctx: Context, name: str, paths: str = "", keep_archive: str = "", **_: Any) -> Freshness:
    return squash_freshness(ctx.settings, ctx.engine, name, _paths(paths), keep_archive)


# -- generators ---------------------------------------------------------------------------------

def _per_deployment(basename: str, action: Callable[..., Any], doc: Callable[[str, str], str], group_doc: str,
                    uptodate: Callable[[str], list[Any]] | None = None,
                    task_dep: Callable[[str], list[str]] | None = None, **extra: Any) -> Iterator[TaskDict]:
    def make(ctx: Context, dep: Deployment) -> TaskDict:
        task: TaskDict = {
            "doc": doc(dep.name, dep.image_ref(ctx.settings.environment)),
            "actions": [(action, [dep.name])],
            "uptodate": uptodate(dep.name) if uptodate else [False],
            **extra,
        }
        if task_dep:
            task["task_dep"] = task_dep(dep.name)
        return task

    return per_deployment(basename, group_doc, make)


def patch_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "patch", patch_action,
        lambda name, ref: f"run --script as root in a container from {ref} and commit it as {ref}",
        "patch a deployment's image: doit patch:NAME --script FILE --author WHO --description WHAT",
        params=[_param("script", "the patch script (a host file, run as root in the image)", short="s"),
                AUTHOR, DESCRIPTION, SOURCE],
    )


def patch_os_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "patch_os", patch_os_action,
        lambda name, ref: f"OS upgrade of {ref} (deployments/common/scripts/apt-upgrade) as a patch",
        "OS upgrade of each selected deployment's image, as a patch",
        params=[AUTHOR, _param("description", "recorded in the image", "OS upgrade", "m"), SOURCE],
    )


def patch_ssl_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "patch_ssl", patch_ssl_action,
        lambda name, ref: f"install the CA bundle (certs.target or --bundle) into {ref}'s trust store",
        "install a CA bundle into each selected deployment's image, as a patch",
        params=[AUTHOR, DESCRIPTION, _param("bundle", "the PEM bundle (default: certs.target)"), SOURCE],
    )


def patch_history_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "patch_history", patch_history_action,
        lambda name, ref: f"list the patches recorded in {ref} (/opt/patches)",
        "list the patches recorded in each selected deployment's image",
        params=[_param("image", "another image to look into (default: the mission image)")],
    )


def crosslink_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "crosslink", crosslink_action,
        lambda name, ref: f"hard-link duplicate files of {ref} into NAMESPACE/squash-{name}:crosslinked",
        "hard-link duplicate files in each selected deployment's image",
        uptodate=lambda name: [StageCheck(f"crosslink:{name}", _crosslink_fresh, name, with_options=True)],
        params=[PATHS, {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
                        "help": "only report what would be linked (always runs)"}],
    )


def export_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "export", export_action,
        lambda name, ref: f"write the crosslinked file system of {ref} to build/squash/{name}.tar (or --keep-archive)",
        "export each selected deployment's crosslinked image to an archive",
        uptodate=lambda name: [StageCheck(f"export:{name}", _export_fresh, name, with_options=True)],
        task_dep=lambda name: [f"crosslink:{name}"],
        params=[_param("keep_archive", "the archive to write (default build/squash/NAME.tar)")],
    )


def import_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "import", import_action,
        lambda name, ref: f"single-layer image of the crosslinked {ref}, configuration restored",
        "import each selected deployment's crosslinked file system as one layer",
        uptodate=lambda name: [StageCheck(f"import:{name}", _import_fresh, name, with_options=True)],
        task_dep=lambda name: [f"crosslink:{name}"],
        params=[_param("archive", "import this tar instead of build/squash/NAME.tar or a stream"), KEEP],
    )


def squash_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "squash", squash_action,
        lambda name, ref: f"one pass: export {ref}, link duplicates, import as one verified layer, then move its tag",
        "squash each selected deployment's image",
        uptodate=lambda name: [StageCheck(f"squash:{name}", _squash_fresh, name, with_options=True)],
        params=[PATHS, KEEP],
    )

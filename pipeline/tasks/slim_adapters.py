"""Adapters for patching and squashing: the options each action and check takes (rows in table.py).

patch, patch_os, patch_ssl and patch_history run only when asked (``uptodate: False``)
and build nothing first: they work on the image the mission tag holds (or ``--source`` /
``--image``).  crosslink, export, import and squash are keyed on their source image IDs,
so only stale steps rerun; only squash moves the mission tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.stages.results import Freshness
from pipeline.tasks.context import Context


def param(name: str, help_text: str, default: str = "", short: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "long": name.replace("_", "-"), "type": str, "default": default,
                            "help": help_text}
    if short:
        spec["short"] = short
    return spec


AUTHOR = param("author", "who applies the patch (recorded in the image)", short="a")
DESCRIPTION = param("description", "what the patch does (recorded in the image)", short="m")
SOURCE = param("source", "the image to patch (default: the deployment's mission image)")
PATHS = param("paths", "comma-separated directories or globs to crosslink "
                        "(default: /opt/conda, /opt/environments and the Python site-packages directories)")
KEEP = param("keep_archive", "also write the exported file system to this tar file")


def _paths(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


# -- actions ------------------------------------------------------------------------------------
# doit passes params by name; never name a parameter task, targets, dependencies or changed.

def patch_action(ctx: Context, name: str, script: str = "", author: str = "", description: str = "",
                 source: str = "") -> Any:
    from pipeline.stages.patch import patch_image
    if not script:
        raise ConfigError(f"give the patch script: doit patch:{name} --script FILE "
                          "--author WHO --description WHAT")
    return patch_image(ctx.settings, ctx.engine, name, Path(script), author, description, source or None)


def patch_os_action(ctx: Context, name: str, author: str = "", description: str = "", source: str = "") -> Any:
    from pipeline.stages.patch import patch_os
    return patch_os(ctx.settings, ctx.engine, name, author, description, source or None)


def patch_ssl_action(ctx: Context, name: str, author: str = "", description: str = "", bundle: str = "",
                     source: str = "") -> Any:
    from pipeline.stages.patch import patch_ssl
    return patch_ssl(ctx.settings, ctx.engine, name, author, description, Path(bundle) if bundle else None,
                     source or None)


def patch_history_action(ctx: Context, name: str, image: str = "") -> Any:
    from pipeline.stages.patch import patch_history
    return patch_history(ctx.settings, ctx.engine, name, image or None)


def crosslink_action(ctx: Context, name: str, paths: str = "", dry_run: bool = False) -> Any:
    from pipeline.stages.crosslink import crosslink_image
    from pipeline.stages.squash import mission_image
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return crosslink_image(ctx.settings, ctx.engine, name, source, _paths(paths), dry_run=bool(dry_run))


def export_action(ctx: Context, name: str, keep_archive: str = "") -> Any:
    from pipeline.stages.squash import write_archive
    return write_archive(ctx.settings, ctx.engine, name, keep_archive)


def import_action(ctx: Context, name: str, archive: str = "", keep_archive: str = "") -> Any:
    from pipeline.stages.squash import import_image, mission_image
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return import_image(ctx.settings, ctx.engine, name, source, archive=archive, keep_archive=keep_archive)


def squash_action(ctx: Context, name: str, paths: str = "", keep_archive: str = "") -> Any:
    from pipeline.stages.squash import squash
    return squash(ctx.settings, ctx.engine, name, _paths(paths), keep_archive)


# -- up-to-date checks --------------------------------------------------------------------------

def crosslink_check(ctx: Context, name: str, paths: str = "", dry_run: bool = False, **_: Any) -> Freshness:
    from pipeline.stages.crosslink import crosslink_freshness
    from pipeline.stages.squash import mission_image
    if dry_run:
        return Freshness(False, "--dry-run always runs")
    _, source = mission_image(ctx.settings, ctx.engine, name)
    return crosslink_freshness(ctx.settings, ctx.engine, source, name, _paths(paths))


def export_check(ctx: Context, name: str, keep_archive: str = "", **_: Any) -> Freshness:
    from pipeline.stages.squash import export_freshness
    return export_freshness(ctx.settings, ctx.engine, name, keep_archive)


def import_check(ctx: Context, name: str, archive: str = "", keep_archive: str = "", **_: Any) -> Freshness:
    from pipeline.stages.squash import import_freshness
    return import_freshness(ctx.settings, ctx.engine, name, archive, keep_archive)


def squash_check(ctx: Context, name: str, paths: str = "", keep_archive: str = "", **_: Any) -> Freshness:
    from pipeline.stages.squash import squash_freshness
    return squash_freshness(ctx.settings, ctx.engine, name, _paths(paths), keep_archive)

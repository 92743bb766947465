"""Adapters for the registry stages whose options need a word of translation (the rows are in table.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.tasks.context import Context


@dataclass(frozen=True)
class ListResult:
    items: tuple[str, ...]

    def values(self) -> dict[str, Any]:
        return {"items": list(self.items)}


def login_action(ctx: Context) -> Any:
    from pipeline.stages import publish
    return ListResult(tuple(publish.login(ctx.settings)))


def promote_action(ctx: Context, name: str, source: str = "", target: str = "") -> Any:
    from pipeline.stages import publish
    return publish.promote(ctx.settings, ctx.settings.deployment(name), source or None, target or None)


def pull_action(ctx: Context, name: str, reference: str = "", tag: bool = False) -> Any:
    from pipeline.stages import publish
    return publish.pull(ctx.settings, ctx.engine, ctx.settings.deployment(name), reference or None, tag=tag)


def delete_action(ctx: Context, name: str, refs: list[str] | None = None, all_tags: bool = False) -> Any:
    from pipeline.stages import publish
    words = [r for r in (refs or []) if r != "--"]
    return ListResult(tuple(publish.delete(ctx.settings, ctx.settings.deployment(name), words, all_tags=all_tags)))


def release_action(ctx: Context, version: list[str] | None = None) -> Any:
    from pipeline.stages import release
    words = [w for w in (version or []) if w != "--"]
    return release.release(ctx.settings, " ".join(words) or None)


def promote_check(ctx: Context, name: str, source: str = "", target: str = "") -> Any:
    from pipeline.stages import publish
    return publish.promote_freshness(ctx.settings, ctx.settings.deployment(name), source or None, target or None)

"""Input keys: what an image stage's result depends on.

A key is the sha256 of a canonical JSON document of *parts*: the rendered
Dockerfile (and the source files it was rendered from), every context entry the
build reads (see pipeline/buildctx: the pipeline sends exactly these), the
images it starts from or copies from by ID, the URLs it fetches with their
checksums, the build args that differ from their ARG defaults, and the parent
image ID.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.hashing import sha256_text

KEY_VERSION = 2
# Args the pipeline passes to every image; BASE_IMAGE is represented by the parent's ID instead.
# FROZEN_SPECS names the context folder a trailer copies as the pins (see plan.FROZEN_SPECS).
PIPELINE_ARGS = frozenset({"BASE_IMAGE", "USE_FROZEN", "FROZEN_SPECS"})


@dataclass(frozen=True)
class InputKey:
    digest: str
    parts: Mapping[str, Any]

    @classmethod
    def of(cls, parts: Mapping[str, Any]) -> InputKey:
        canonical = json.dumps({"v": KEY_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
        return cls(sha256_text(canonical), parts)


def keyed_args(declared: Mapping[str, list[str | None]], buildargs: Mapping[str, str],
               parent_arg: str = "BASE_IMAGE") -> dict[str, str]:
    """The build args that change the image: declared, not the parent's, and not equal to every ARG default.

    A build arg set to its ARG default builds the same image as leaving it unset, so it keys the same.
    """
    out = {}
    for name, value in sorted(buildargs.items()):
        defaults = declared.get(name)
        if defaults is None or name == parent_arg:
            continue
        if all(d is not None and d == value for d in defaults):
            continue
        out[name] = value
    return out


def image_key(
    *,
    rendered: str,
    sources: Mapping[str, str],
    files: Mapping[str, str],
    images: Mapping[str, str],
    urls: list[str],
    args: Mapping[str, str],
    parent_id: str,
) -> InputKey:
    """Compute the input key of one Dockerfile build.

    Args:
        rendered: the exact Dockerfile text that will be built.
        sources: display name -> sha256 of each file the Dockerfile was rendered from.
        files: context path -> keyed entry (``file:MODE:DIGEST``, ``dir``, ``link:TARGET``).
        images: image reference -> ID, for every other image the build reads.
        urls: ``URL CHECKSUM`` of every ADD of a URL.
        args: the build args that matter (see :func:`keyed_args`).
    """
    parts = {
        "dockerfile": {"rendered": sha256_text(rendered), "sources": dict(sources)},
        "files": dict(files),
        "images": dict(images),
        "urls": sorted(urls),
        "args": dict(args),
        "parent": parent_id,
    }
    return InputKey.of(parts)


def short(image_id: str | None) -> str:
    if not image_id:
        return "none"
    algo, _, hexd = image_id.partition(":")
    if not hexd:
        return image_id[:12]
    return f"{algo}:{hexd[:12]}…" if len(hexd) > 12 else image_id


def explain(old: Mapping[str, Any] | None, new: Mapping[str, Any], limit: int = 5) -> list[str]:
    """Plain-words differences between two key part sets, most telling first."""
    if old is None:
        return ["inputs changed (no record of the previous inputs in build/keys/)"]
    reasons: list[str] = []
    old_df, new_df = old.get("dockerfile", {}), new.get("dockerfile", {})
    if isinstance(new_df, Mapping) and isinstance(old_df, Mapping):
        reasons += _dict_diff("Dockerfile", old_df.get("sources", {}), new_df.get("sources", {}), values=False)
        if old_df.get("rendered") != new_df.get("rendered") and not reasons:
            reasons.append("rendered Dockerfile changed (builder settings such as builder.buildkit)")
    reasons += _files_diff(old.get("files", {}), new.get("files", {}), limit=limit)
    reasons += _dict_diff("image", old.get("images", {}), new.get("images", {}), values=False)
    reasons += _dict_diff("build arg", old.get("args", {}), new.get("args", {}), values=True)
    if old.get("urls") != new.get("urls"):
        reasons.append("ADD URLs changed")
    if old.get("parent") != new.get("parent"):
        reasons.append(f"parent changed {short(old.get('parent'))} -> {short(new.get('parent'))}")
    for key in sorted(set(old) | set(new)):
        if key in ("dockerfile", "files", "images", "args", "urls", "parent"):
            continue
        if old.get(key) != new.get(key):
            reasons.append(f"{key} changed: {old.get(key)!r} -> {new.get(key)!r}")
    return reasons or ["inputs changed"]


def _files_diff(old: Mapping[str, str], new: Mapping[str, str], *, limit: int) -> list[str]:
    def what(entry: str | None) -> str:
        if entry == "dir":
            return "directory"
        return "symlink" if str(entry).startswith("link:") else "file"

    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            out.append(f"{what(after)} {name} added")
        elif after is None:
            out.append(f"{what(before)} {name} removed")
        elif what(before) != what(after):
            out.append(f"{name} changed from a {what(before)} to a {what(after)}")
        elif str(before).split(":")[-1] == str(after).split(":")[-1]:
            out.append(f"{what(after)} {name} changed mode")
        else:
            out.append(f"{what(after)} {name} changed")
    if len(out) > limit:
        out = out[:limit] + [f"…and {len(out) - limit} more file changes"]
    return out


def _dict_diff(
    what: str, old: Mapping[str, str], new: Mapping[str, str], *, values: bool, limit: int = 5
) -> list[str]:
    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"{what} {name} added" + (f" = {new[name]!r}" if values else ""))
        elif name not in new:
            out.append(f"{what} {name} removed")
        elif old[name] != new[name]:
            out.append(f"{what} {name} changed" + (f": {old[name]!r} -> {new[name]!r}" if values else ""))
    if len(out) > limit:
        out = out[:limit] + [f"…and {len(out) - limit} more {what} changes"]
    return out

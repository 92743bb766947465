"""Input keys: what an image stage's result depends on, the way Docker's layer cache sees it.

A key is the sha256 of a canonical JSON document of *parts*: the rendered
Dockerfile (and the source files it was rendered from), the content and mode
of exactly the context files that its COPY/ADD instructions use after
.dockerignore, the build args the Dockerfile declares, and the parent image ID.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter

from pipeline.errors import ConfigError
from pipeline.hashing import FileHasher, sha256_text

KEY_VERSION = 1
# Args the pipeline passes to every image; BASE_IMAGE is represented by the parent's ID instead.
# FROZEN_SPECS names the context folder a trailer copies as the pins (see plan.FROZEN_SPECS).
PIPELINE_ARGS = ("BASE_IMAGE", "USE_FROZEN", "FROZEN_SPECS")
_GLOB = set("*?[")


@dataclass(frozen=True)
class InputKey:
    digest: str
    parts: Mapping[str, Any]

    @classmethod
    def of(cls, parts: Mapping[str, Any]) -> InputKey:
        canonical = json.dumps({"v": KEY_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
        return cls(sha256_text(canonical), parts)


@dataclass(frozen=True)
class CopySources:
    local: tuple[str, ...]  # source patterns relative to the context ("." = everything)
    urls: tuple[str, ...]


def parse(text: str, buildargs: Mapping[str, str]) -> DockerfileParser:
    """Parse Dockerfile text with dockerfile-parse (ARG/ENV substitution per Docker's scoping)."""
    return DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")), build_args=dict(buildargs))


def declared_args(parser: DockerfileParser) -> set[str]:
    names: set[str] = set()
    for instr in parser.structure:
        if instr["instruction"] == "ARG":
            names.add(instr["value"].split("=", 1)[0].strip())
    return names


def copy_sources(parser: DockerfileParser) -> CopySources:
    """The context sources of every COPY/ADD that reads the build context."""
    local: list[str] = []
    urls: list[str] = []
    for instr, ctx in zip(parser.structure, parser.context_structure, strict=False):
        if instr["instruction"] not in ("COPY", "ADD"):
            continue
        value = instr["value"].strip()
        if value.startswith("["):
            try:
                words = [str(w) for w in json.loads(value)]
            except ValueError:
                words = WordSplitter(value).split(dequote=True)
        else:
            words = list(WordSplitter(value, args={**ctx.args, **ctx.envs}).split(dequote=True))
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # copies from another stage or image, not from the context
        args = [w for w in words if not w.startswith("--")]
        for src in args[:-1]:
            if src.startswith(("http://", "https://", "git@")):
                urls.append(src)
            elif src.startswith("<<"):
                continue  # heredoc: its text is in the Dockerfile itself
            else:
                local.append(_normalise(src))
    return CopySources(tuple(local), tuple(urls))


def _normalise(src: str) -> str:
    src = src.strip().lstrip("/")
    while src.startswith("./"):
        src = src[2:]
    src = src.rstrip("/")
    return os.path.normpath(src) if src else "."


def _segments_match(pattern: str, path: str) -> bool:
    pp, ps = pattern.split("/"), path.split("/")
    return len(pp) == len(ps) and all(fnmatch.fnmatchcase(p, s_pat) for s_pat, p in zip(pp, ps, strict=False))


def _uses(source: str, path: str) -> bool:
    if source == ".":
        return True
    if not (_GLOB & set(source)):
        return path == source or path.startswith(source + "/")
    parts = path.split("/")
    return any(_segments_match(source, "/".join(parts[:k])) for k in range(1, len(parts) + 1))


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def used_files(context: Path, sources: Iterable[str]) -> list[str]:
    """Context-relative paths of the files (and symlinks) that the sources copy, after .dockerignore."""
    sources = list(sources)
    if not sources:
        return []
    included = exclude_paths(str(context), dockerignore_patterns(context), dockerfile=".pipeline-no-dockerfile")
    out = []
    for rel in included:
        full = context / rel
        if full.is_dir() and not full.is_symlink():
            continue
        if any(_uses(src, rel) for src in sources):
            out.append(rel)
    return sorted(out)


def file_entry(path: Path, hasher: FileHasher) -> str:
    st = path.lstat()
    mode = f"{stat.S_IMODE(st.st_mode):o}"
    if stat.S_ISLNK(st.st_mode):
        return f"link:{os.readlink(path)}:{mode}"
    return f"{hasher.digest(path)}:{mode}"


def image_key(
    *,
    rendered: str,
    sources: Mapping[str, str],
    context: Path,
    buildargs: Mapping[str, str],
    parent_id: str,
    hasher: FileHasher,
) -> InputKey:
    """Compute the input key of one Dockerfile build.

    Args:
        rendered: the exact Dockerfile text that will be built.
        sources: display name -> sha256 of each file the Dockerfile was rendered from.
        buildargs: every arg the pipeline would pass (only declared ones count).

    Raises:
        ConfigError: a context file cannot be read.
    """
    parser = parse(rendered, buildargs)
    declared = declared_args(parser)
    copies = copy_sources(parser)
    files: dict[str, str] = {}
    for rel in used_files(context, copies.local):
        try:
            files[rel] = file_entry(context / rel, hasher)
        except OSError as exc:
            raise ConfigError(f"{context / rel}: cannot read build context file: {exc}") from None
    args = {k: v for k, v in sorted(buildargs.items()) if k in declared and k != "BASE_IMAGE"}
    parts = {
        "dockerfile": {"rendered": sha256_text(rendered), "sources": dict(sources)},
        "files": files,
        "urls": sorted(copies.urls),
        "args": args,
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
    reasons += _dict_diff("file", old.get("files", {}), new.get("files", {}), values=False, limit=limit)
    reasons += _dict_diff("build arg", old.get("args", {}), new.get("args", {}), values=True)
    if old.get("urls") != new.get("urls"):
        reasons.append("ADD URLs changed")
    if old.get("parent") != new.get("parent"):
        reasons.append(f"parent changed {short(old.get('parent'))} -> {short(new.get('parent'))}")
    for key in sorted(set(old) | set(new)):
        if key in ("dockerfile", "files", "args", "urls", "parent"):
            continue
        if old.get(key) != new.get(key):
            reasons.append(f"{key} changed: {old.get(key)!r} -> {new.get(key)!r}")
    return reasons or ["inputs changed"]


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

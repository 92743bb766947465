"""Configuration: deployments/pipeline.yaml and deployments/NAME/deployment.yaml.

Loaded once at the edge into frozen dataclasses and validated on load.  See
docs/configuration.md for every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config_parts import (
    parse_arg_name,
    parse_build_args,
    parse_cache,
    parse_cache_mounts,
    parse_extra_tags,
    parse_pins,
    parse_registry,
    parse_release,
    parse_run_args,
    parse_scan,
    parse_secrets,
    parse_sscan,
    parse_tags,
    pin_level,
)
from pipeline.config_sign import parse_sign
from pipeline.errors import ConfigError
from pipeline.keys import PIPELINE_ARGS
from pipeline.section import Section
from pipeline.settings import Bootstrap, Certs, Deployment, Layer, Registry, Root, Settings
from pipeline.yamlfile import display
from pipeline.yamlmemo import FILE as YAML_MEMO
from pipeline.yamlmemo import YamlMemo

ENVIRONMENTS = ("sandbox", "dev", "test", "prod")
ROOT_KINDS = ("image", "rootfs", "bootstrap")
# Overrides that may come from `doit key=value` or PIPELINE_KEY environment variables.
OVERRIDE_KEYS = ("deployment", "environment", "frozen")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def collect_overrides(doit_vars: Mapping[str, str | None], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Overrides from `doit key=value` (first) or PIPELINE_KEY environment variables."""
    out: dict[str, str] = {}
    for key in OVERRIDE_KEYS:
        value = doit_vars.get(key) or environ.get(f"PIPELINE_{key.upper()}")
        if value is not None and value.strip():
            out[key] = value.strip()
    return out


def load(deployments_dir: Path, overrides: Mapping[str, str] | None = None, build_dir: Path | None = None) -> Settings:
    """Load and validate the whole configuration.

    Raises:
        ConfigError: any invalid file, key or override; the message names it.
    """
    overrides = dict(overrides or {})
    deployments_dir = deployments_dir.resolve()
    if not deployments_dir.is_dir():
        raise ConfigError(
            f"{display(deployments_dir)}: deployments folder not found; run doit from the project root "
            "or set PIPELINE_DEPLOYMENTS_DIR"
        )
    build_dir = (build_dir or deployments_dir.parent / "build").resolve()
    memo = YamlMemo(build_dir / "cache" / YAML_MEMO)
    path = deployments_dir / "pipeline.yaml"
    top = Section(path, memo.load(path))
    top.reject_unknown(
        ["environment", "frozen", "builder", "namespace", "root", "certs", "chain", "trailer", "registry", "run",
         "release", "scan", "sscan", "cache", "sign"]
    )
    environment = top.choice("environment", ENVIRONMENTS, "sandbox")
    if "environment" in overrides:
        environment = overrides["environment"]
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"environment override {environment!r} (environment= or PIPELINE_ENVIRONMENT) is not one of: "
                + ", ".join(ENVIRONMENTS)
            )
    pins = parse_pins(top)
    if "frozen" in overrides:
        level = pin_level(overrides["frozen"])
        if level is None:
            raise ConfigError(f"frozen override {overrides['frozen']!r} (frozen= or PIPELINE_FROZEN) must be 1 or 0 "
                              "(or 2 / chilly)")
        pins = level
    builder = top.section("builder")
    builder.reject_unknown(["buildkit", "cache_mounts"])
    namespace = top.str("namespace", "pipeline")
    assert namespace is not None
    if not _REPO.match(namespace):
        raise top.error(f"key 'namespace' is {namespace!r}; use lowercase letters, digits, '.', '_' or '-'", "namespace")
    registry = parse_registry(top.section("registry")) or Registry(kind="generic", host="localhost")
    settings = Settings(
        deployments_dir=deployments_dir,
        build_dir=build_dir,
        environment=environment,
        frozen=pins == "frozen",
        pins=pins,
        buildkit=builder.bool("buildkit", False),
        cache_mounts=parse_cache_mounts(builder),
        namespace=namespace,
        root=_root(top.section("root"), deployments_dir),
        certs=_certs(top.section("certs"), deployments_dir),
        chain=_chain(top, deployments_dir),
        trailer=top.file("trailer", deployments_dir, required=False),
        registry=registry,
        run_args=parse_run_args(top),
        release=parse_release(top.section("release")),
        scan=parse_scan(top.section("scan"), deployments_dir, memo.load),
        cache=parse_cache(top.section("cache"), deployments_dir),
        sscan=parse_sscan(top.section("sscan"), deployments_dir),
        sign=parse_sign(top.section("sign"), deployments_dir),
    )
    deployments = tuple(_deployment(folder, settings, memo.load) for folder in _select(deployments_dir, overrides))
    memo.save()
    return replace(settings, deployments=deployments)


def _root(sec: Section, base: Path) -> Root:
    sec.reject_unknown(ROOT_KINDS)
    given = [kind for kind in ROOT_KINDS if sec.has(kind)]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        raise sec.error(f"key 'root' needs exactly one of: {', '.join(ROOT_KINDS)}{found}", given[-1] if given else None)
    kind = given[0]
    if kind == "image":
        return Root(image=sec.req("image"))
    if kind == "rootfs":
        return Root(rootfs=sec.file("rootfs", base))
    boot = sec.section("bootstrap")
    boot.reject_unknown(["suite", "mirror", "variant", "include"])
    include = boot.raw("include") or []
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise boot.error("key 'root.bootstrap.include' must be a list of package names", "include")
    return Root(
        bootstrap=Bootstrap(
            suite=boot.req("suite"),
            mirror=boot.str("mirror", "http://deb.debian.org/debian") or "",
            variant=boot.str("variant", "minbase") or "",
            include=tuple(include),
        )
    )


def _certs(sec: Section, base: Path) -> Certs:
    sec.reject_unknown(["source", "target"])
    source = sec.str("source", "auto")
    assert source is not None
    if source != "auto":
        resolved = sec.file("source", base)
        assert resolved is not None
        source = str(resolved)
    target = sec.str("target", "common/tls-ca-bundle.pem")
    assert target is not None
    return Certs(source=source, target=(base / target).resolve())


def _chain(top: Section, base: Path) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    for item in top.items("chain"):
        item.reject_unknown(["name", "dockerfile", "context", "build_args", "base_arg", "tags"])
        name = item.req("name")
        if not _NAME.match(name) or name == "root":
            raise item.error(f"key '{item.dotted('name')}' is {name!r}; use lowercase letters, digits, '.', '_', '-' (not 'root')", "name")
        if any(layer.name == name for layer in layers):
            raise item.error(f"key '{item.dotted('name')}': layer name {name!r} is used twice", "name")
        dockerfile = item.file("dockerfile", base)
        assert dockerfile is not None
        base_arg = parse_arg_name(item, "base_arg")
        layers.append(Layer(
            name=name, dockerfile=dockerfile, context=item.directory("context", base),
            build_args=parse_build_args(item, (base_arg, *PIPELINE_ARGS)), base_arg=base_arg,
            extra_tags=parse_extra_tags(item, "tags"),
        ))
    return tuple(layers)


def _select(base: Path, overrides: Mapping[str, str]) -> list[Path]:
    available = sorted(p.parent for p in base.glob("*/deployment.yaml"))
    names = [p.name for p in available]
    wanted = overrides.get("deployment")
    if not wanted:
        return available
    chosen: list[Path] = []
    for name in (n.strip() for n in wanted.split(",")):
        if not name:
            continue
        if name not in names:
            raise ConfigError(
                f"unknown deployment '{name}' (deployment= or PIPELINE_DEPLOYMENT); "
                f"available under {display(base)}: {', '.join(names) or 'none'}"
            )
        chosen.append(base / name)
    return chosen


def _deployment(folder: Path, settings: Settings, load: Callable[[Path], Any]) -> Deployment:
    path = folder / "deployment.yaml"
    sec = Section(path, load(path))
    sec.reject_unknown(
        ["repo", "context", "dockerfile", "trailer", "build_args", "base_arg", "test", "test_timeout", "freeze",
         "registry", "run", "tags", "secrets", "task_dep", "file_dep"]
    )
    name = folder.name
    repo = sec.str("repo", name)
    assert repo is not None
    if not _REPO.match(repo):
        raise sec.error(f"key 'repo' is {repo!r}; a repository name is lowercase letters, digits, '.', '_', '-', '/'", "repo")
    # The build context (and so the Dockerfile and the spec folders) may be a sub-folder such as image/;
    # deployment.yaml stays at the top of the deployment folder.
    context = sec.directory("context", folder) if sec.has("context") else folder.resolve()
    where = "the deployment folder" if context == folder.resolve() else f"its context {display(context)}"
    if sec.has("dockerfile"):
        dockerfile = sec.file("dockerfile", context)
    elif (context / "Dockerfile.custom").is_file():
        dockerfile = context / "Dockerfile.custom"
    elif (context / "Dockerfile").is_file():
        dockerfile = context / "Dockerfile"
    else:
        raise sec.error(f"no Dockerfile.custom or Dockerfile in {where}; add one or set key 'dockerfile'")
    assert dockerfile is not None
    # A plain Dockerfile is complete as it is; anything else gets the shared trailer appended.
    trailer = sec.bool("trailer", dockerfile.name != "Dockerfile")
    base_arg = parse_arg_name(sec, "base_arg")
    build_args = parse_build_args(sec, (*PIPELINE_ARGS, base_arg))
    return Deployment(
        name=name,
        folder=folder.resolve(),
        repo=repo,
        dockerfile=dockerfile,
        trailer=trailer,
        build_args=build_args,
        test=sec.str("test", "/opt/environments/test") or "",
        freeze=sec.str("freeze", "/opt/env-frozen") or "",
        registry=parse_registry(sec.section("registry")) or settings.registry,
        run_args=settings.run_args + parse_run_args(sec),
        test_timeout=sec.number("test_timeout", 1800.0),
        tags=parse_tags(sec.section("tags")),
        secrets=parse_secrets(sec.section("secrets")),
        context=context,
        base_arg=base_arg,
        extra_tags=parse_extra_tags(sec.section("tags"), "extra"),
        task_dep=_names(sec, "task_dep"),
        file_dep=tuple(_doit_path(p) for p in _paths(sec, "file_dep", folder)),
    )


def _names(sec: Section, key: str) -> tuple[str, ...]:
    raw = sec.raw(key)
    items = [raw] if isinstance(raw, str) else raw if raw is not None else []
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise sec.error(f"key '{sec.dotted(key)}' must be a list of doit task names, e.g. [prepare:demo]", key)
    return tuple(i.strip() for i in items)


def _paths(sec: Section, key: str, base: Path) -> list[Path]:
    raw = sec.raw(key)
    items = [raw] if isinstance(raw, str) else raw if raw is not None else []
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise sec.error(f"key '{sec.dotted(key)}' must be a list of files (relative to the deployment folder)", key)
    return [Path(i) if Path(i).is_absolute() else (base / i).resolve() for i in items]


def _doit_path(path: Path) -> str:
    """A file_dep as doit matches it against other tasks' targets: relative to doit's working directory."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

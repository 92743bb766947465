"""Configuration: deployments/pipeline.yaml and deployments/NAME/deployment.yaml.

Loaded once at the edge into frozen dataclasses and validated on load.  See
docs/configuration.md for every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.section import Section, parse_bool
from pipeline.yamlfile import display, load_yaml

ENVIRONMENTS = ("sandbox", "dev", "test", "prod")
ROOT_KINDS = ("image", "rootfs", "bootstrap")
REGISTRY_KINDS = ("generic", "ecr")
# Overrides that may come from `doit key=value` or PIPELINE_KEY environment variables.
OVERRIDE_KEYS = ("deployment", "environment", "frozen")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Bootstrap:
    suite: str
    mirror: str
    variant: str
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Root:
    """Exactly one of ``image``, ``rootfs`` or ``bootstrap`` is set."""

    image: str | None = None
    rootfs: Path | None = None
    bootstrap: Bootstrap | None = None

    @property
    def kind(self) -> str:
        return "image" if self.image else "rootfs" if self.rootfs else "bootstrap"


@dataclass(frozen=True)
class Certs:
    source: str  # "auto" or an absolute path
    target: Path


@dataclass(frozen=True)
class Layer:
    name: str
    dockerfile: Path
    context: Path


@dataclass(frozen=True)
class Registry:
    kind: str
    host: str
    insecure: bool = False
    account: str | None = None
    region: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True)
class Deployment:
    name: str
    folder: Path
    repo: str
    dockerfile: Path
    trailer: bool
    build_args: Mapping[str, str]
    test: str
    freeze: str
    registry: Registry
    run_args: tuple[str, ...] = ()  # docker run flags: pipeline.yaml's run.args, then this deployment's
    test_timeout: float = 1800.0

    def image_ref(self, environment: str) -> str:
        """The mission image's local tag, already its full registry reference."""
        return f"{self.registry.host}/{self.repo}:unscanned-latest-{environment}"


@dataclass(frozen=True)
class Settings:
    deployments_dir: Path
    build_dir: Path
    environment: str
    frozen: bool
    buildkit: bool
    namespace: str
    root: Root
    certs: Certs
    chain: tuple[Layer, ...]
    trailer: Path | None
    registry: Registry
    run_args: tuple[str, ...] = ()
    deployments: tuple[Deployment, ...] = field(default_factory=tuple)

    @property
    def root_ref(self) -> str:
        return f"{self.namespace}/root:latest"

    def layer_ref(self, layer: Layer) -> str:
        return f"{self.namespace}/{layer.name}:latest"

    @property
    def top_ref(self) -> str:
        """The image every mission image is built FROM: the last chain layer, or the root."""
        return self.layer_ref(self.chain[-1]) if self.chain else self.root_ref

    def deployment(self, name: str) -> Deployment:
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise ConfigError(f"unknown deployment '{name}'; selected: {', '.join(d.name for d in self.deployments)}")


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
    path = deployments_dir / "pipeline.yaml"
    top = Section(path, load_yaml(path))
    top.reject_unknown(
        ["environment", "frozen", "builder", "namespace", "root", "certs", "chain", "trailer", "registry", "run"]
    )
    environment = top.choice("environment", ENVIRONMENTS, "sandbox")
    if "environment" in overrides:
        environment = overrides["environment"]
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"environment override {environment!r} (environment= or PIPELINE_ENVIRONMENT) is not one of: "
                + ", ".join(ENVIRONMENTS)
            )
    frozen = top.bool("frozen", False)
    if "frozen" in overrides:
        parsed = parse_bool(overrides["frozen"])
        if parsed is None:
            raise ConfigError(f"frozen override {overrides['frozen']!r} (frozen= or PIPELINE_FROZEN) must be 1 or 0")
        frozen = parsed
    builder = top.section("builder")
    builder.reject_unknown(["buildkit"])
    namespace = top.str("namespace", "pipeline")
    assert namespace is not None
    if not _REPO.match(namespace):
        raise top.error(f"key 'namespace' is {namespace!r}; use lowercase letters, digits, '.', '_' or '-'", "namespace")
    registry = _registry(top.section("registry"), required=True)
    assert registry is not None
    settings = Settings(
        deployments_dir=deployments_dir,
        build_dir=(build_dir or deployments_dir.parent / "build").resolve(),
        environment=environment,
        frozen=frozen,
        buildkit=builder.bool("buildkit", False),
        namespace=namespace,
        root=_root(top.section("root"), deployments_dir),
        certs=_certs(top.section("certs"), deployments_dir),
        chain=_chain(top, deployments_dir),
        trailer=top.file("trailer", deployments_dir, required=False),
        registry=registry,
        run_args=_run_args(top),
    )
    deployments = tuple(_deployment(folder, settings) for folder in _select(deployments_dir, overrides))
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
        item.reject_unknown(["name", "dockerfile", "context"])
        name = item.req("name")
        if not _NAME.match(name) or name == "root":
            raise item.error(f"key '{item.dotted('name')}' is {name!r}; use lowercase letters, digits, '.', '_', '-' (not 'root')", "name")
        if any(layer.name == name for layer in layers):
            raise item.error(f"key '{item.dotted('name')}': layer name {name!r} is used twice", "name")
        dockerfile = item.file("dockerfile", base)
        assert dockerfile is not None
        layers.append(Layer(name=name, dockerfile=dockerfile, context=item.directory("context", base)))
    return tuple(layers)


def _registry(sec: Section, *, required: bool) -> Registry | None:
    if not sec.data:
        if required:
            return Registry(kind="generic", host="localhost")
        return None
    kind = sec.choice("kind", REGISTRY_KINDS, "generic")
    if kind == "generic":
        sec.reject_unknown(["kind", "host", "insecure"])
        return Registry(kind=kind, host=sec.req("host"), insecure=sec.bool("insecure", False))
    sec.reject_unknown(["kind", "host", "account", "region", "role_arn", "endpoint_url"])
    account, region = sec.req("account"), sec.req("region")
    host = sec.str("host") or f"{account}.dkr.ecr.{region}.amazonaws.com"
    return Registry(
        kind=kind,
        host=host,
        account=account,
        region=region,
        role_arn=sec.str("role_arn"),
        endpoint_url=sec.str("endpoint_url"),
    )


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


def _run_args(sec: Section) -> tuple[str, ...]:
    """``run: {args: [...]}``: extra docker run flags (mounts, env, ports) for containers from the images."""
    run = sec.section("run")
    run.reject_unknown(["args"])
    args = run.raw("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
        raise run.error("key 'run.args' must be a list of docker run arguments, e.g. [-e, FOO=1, -v, /data:/data]", "args")
    return tuple(str(a) for a in args)


def _timeout(sec: Section, key: str, default: float) -> float:
    value = sec.raw(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise sec.error(f"key '{sec.dotted(key)}' must be a positive number of seconds, not {value!r}", key)
    return float(value)


def _deployment(folder: Path, settings: Settings) -> Deployment:
    path = folder / "deployment.yaml"
    sec = Section(path, load_yaml(path))
    sec.reject_unknown(
        ["repo", "dockerfile", "trailer", "build_args", "test", "test_timeout", "freeze", "registry", "run"]
    )
    name = folder.name
    repo = sec.str("repo", name)
    assert repo is not None
    if not _REPO.match(repo):
        raise sec.error(f"key 'repo' is {repo!r}; a repository name is lowercase letters, digits, '.', '_', '-', '/'", "repo")
    if sec.has("dockerfile"):
        dockerfile = sec.file("dockerfile", folder)
    elif (folder / "Dockerfile.custom").is_file():
        dockerfile = folder / "Dockerfile.custom"
    elif (folder / "Dockerfile").is_file():
        dockerfile = folder / "Dockerfile"
    else:
        raise sec.error("no Dockerfile.custom or Dockerfile in the deployment folder; add one or set key 'dockerfile'")
    assert dockerfile is not None
    # A plain Dockerfile is complete as it is; anything else gets the shared trailer appended.
    trailer = sec.bool("trailer", dockerfile.name != "Dockerfile")
    build_args = sec.string_map("build_args")
    for reserved in ("BASE_IMAGE", "USE_FROZEN"):
        if reserved in build_args:
            raise sec.error(f"key 'build_args.{reserved}' is set by the pipeline; remove it", "build_args")
    return Deployment(
        name=name,
        folder=folder.resolve(),
        repo=repo,
        dockerfile=dockerfile,
        trailer=trailer,
        build_args=build_args,
        test=sec.str("test", "/opt/environments/test") or "",
        freeze=sec.str("freeze", "/opt/env-frozen") or "",
        registry=_registry(sec.section("registry"), required=False) or settings.registry,
        run_args=settings.run_args + _run_args(sec),
        test_timeout=_timeout(sec, "test_timeout", 1800.0),
    )

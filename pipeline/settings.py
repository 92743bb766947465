"""The configuration model: frozen dataclasses built once by pipeline.config.load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError


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
    build_args: Mapping[str, str] = field(default_factory=dict)
    base_arg: str = "BASE_IMAGE"  # the ARG the final FROM reads the parent from (docker-stacks: BASE_CONTAINER)
    extra_tags: tuple[str, ...] = ()  # templates, see pipeline.tagging


@dataclass(frozen=True)
class Registry:
    kind: str
    host: str
    insecure: bool = False
    account: str | None = None
    region: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    retries: int = 4
    backoff: float = 1.0


@dataclass(frozen=True)
class Tags:
    """Registry tag templates; ``{environment}`` is replaced."""

    build: str = "unscanned-latest-{environment}"
    promoted: str = "latest-{environment}"


@dataclass(frozen=True)
class Release:
    branch: str = "main"
    push_tag: bool = True


@dataclass(frozen=True)
class Cache:
    """The registry as a stage cache shared between CI runners."""

    repo: str
    pull: bool = True
    push: bool = True
    trust: tuple[Path, ...] = ()  # public keys: with any, only entries with provenance signed by one are used
    connect_timeout: float = 3.0  # seconds to open a connection to the registry
    timeout: float = 10.0  # seconds to wait for an answer once connected


@dataclass(frozen=True)
class Sign:
    """pipeline.yaml ``sign:``: the key attestations are signed with, the keys they are verified against."""

    key: str | None = None  # a PEM file path, or the name of an environment variable holding the PEM
    passphrase_env: str | None = None  # environment variable with the private key's passphrase
    public_keys: tuple[Path, ...] = ()
    required: bool = False  # promote and release refuse an image without valid signed provenance


@dataclass(frozen=True)
class UbuntuCve:
    """Where and for which release to read Ubuntu's CVE status."""

    release: str
    base_url: str = "https://ubuntu.com/security/cves"
    cache_ttl: float = 86400.0
    parallel: int = 8
    timeout: float = 10.0


@dataclass(frozen=True)
class Scan:
    backend: str = "auto"  # auto (ecr for ECR registries, else osv) | ecr | osv
    osv: str | None = None  # a directory of OSV JSON files, or an http(s) URL of a zip of them
    min_severity: str = "MEDIUM"
    fail_on: tuple[str, ...] = ("CRITICAL", "HIGH")
    ignore: Path | None = None
    timeout: float = 1800.0  # waiting for an ECR scan
    poll: float = 5.0
    max_age: float = 86400.0  # a result older than this is stale: new CVEs appear against old images
    ubuntu: UbuntuCve | None = None
    require_inventory: bool = True  # osv: an image with no package inventoried could not be scanned (exit 2)
    allow_tag_fallback: bool = False  # scan.ecr.allow_tag_fallback: read findings by tag, only for the same digest

    def backend_for(self, registry: Registry) -> str:
        """``auto`` means ECR's own scanning for ECR registries, else the offline OSV database."""
        if self.backend != "auto":
            return self.backend
        return "ecr" if registry.kind == "ecr" else "osv"


@dataclass(frozen=True)
class Sscan:
    """pipeline.yaml ``sscan:``: the source scanners' options."""

    pip_audit: bool = True  # audit against PyPI's vulnerability service (fails when it cannot be reached)
    osv: Path | None = None  # an offline OSV database: a directory (or .zip) of OSV JSON files
    ignore: tuple[Path, ...] = ()  # YAML ignore files: [{id, reason, expires, package?}]
    timeout: float = 600.0  # seconds for one scanner program run


@dataclass(frozen=True)
class Secrets:
    """deployment.yaml ``secrets:``: the git repository of the deployment's sops-encrypted secrets."""

    repo: str
    role_arn: str | None = None
    sts_endpoint_url: str | None = None
    region: str | None = None


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
    tags: Tags = field(default_factory=Tags)
    secrets: Secrets | None = None
    context: Path | None = None  # the build context (``context:``, relative to the folder); None: the folder
    base_arg: str = "BASE_IMAGE"
    extra_tags: tuple[str, ...] = ()  # ``tags.extra`` templates, see pipeline.tagging
    task_dep: tuple[str, ...] = ()  # the user's own doit tasks the build waits for (preparation steps)
    file_dep: tuple[str, ...] = ()  # files the build depends on, as doit sees them (cwd-relative)

    @property
    def image_dir(self) -> Path:
        """Where the build context and the spec folders (environments/, env-frozen/, env-chilly/) are."""
        return self.context or self.folder

    @property
    def repository(self) -> str:
        """HOST/REPO in the deployment's registry."""
        return f"{self.registry.host}/{self.repo}"

    def tag(self, which: str, environment: str) -> str:
        """The ``build`` or ``promoted`` tag for ``environment``."""
        return str(getattr(self.tags, which)).replace("{environment}", environment)

    def image_ref(self, environment: str) -> str:
        """The mission image's local tag, already its full registry reference."""
        return f"{self.repository}:{self.tag('build', environment)}"


# Pin levels, as the old scripts' USE_FROZEN: floating (0) installs the loose specs of environments/,
# frozen (1) exactly the pins of env-frozen/, chilly (2) the partially pinned specs of env-chilly/.
LAB_PORT = 8888  # the port JupyterLab listens on inside the image (its CMD: --port=8888)
PIN_LEVELS = ("floating", "frozen", "chilly")


@dataclass(frozen=True)
class Settings:
    deployments_dir: Path
    build_dir: Path
    environment: str
    frozen: bool  # the pin level is "frozen" (the committed env-frozen/ is the build's input)
    buildkit: bool
    namespace: str
    root: Root
    certs: Certs
    chain: tuple[Layer, ...]
    trailer: Path | None
    registry: Registry
    run_args: tuple[str, ...] = ()
    release: Release = field(default_factory=Release)
    scan: Scan = field(default_factory=Scan)
    cache: Cache | None = None
    deployments: tuple[Deployment, ...] = field(default_factory=tuple)
    sscan: Sscan = field(default_factory=Sscan)
    sign: Sign = field(default_factory=Sign)
    pins: str = "floating"  # one of PIN_LEVELS; ``frozen`` is ``pins == "frozen"``
    cache_mounts: tuple[str, ...] | None = None  # BuildKit RUN cache mounts; None: render.CACHE_MOUNTS

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

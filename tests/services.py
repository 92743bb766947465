"""Services the registry tests start themselves (CI starts with none running):
Debian's ``docker-registry`` (distribution 2.8) in several flavours, and moto in
server mode standing in for ECR and STS.

Each service is a small class that starts a real process on 127.0.0.1 with a
free port, waits until it answers, and stops it (terminate, then wait). The
pytest fixtures that hand them out live at the end of this module and are
imported by ``conftest.py``.

A missing binary skips the tests with the reason locally, but fails them when
``CI`` is set: ``scripts/setup`` installs ``docker-registry``, ``apache2-utils``
and ``moto[server]``, so there a missing one is a broken setup, not a choice.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

LOCALHOST = "127.0.0.1"
START_TIMEOUT = 30.0

# What a client must send to get a manifest back as it was pushed: without these
# distribution converts it to schema1, which has another digest.
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST_V2 = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (MANIFEST_V2, MANIFEST_LIST_V2, OCI_MANIFEST, OCI_INDEX)


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------
def require_tool(path: str | Path | None, name: str, install: str) -> Path:
    """The tool's path; skip (locally) or fail (under CI) when it is missing."""
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return Path(path)
    reason = f"{name} not found; install it with: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (scripts/setup should have installed it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class _Process:
    """A background service process with its output in a log file."""

    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        assert not self.running, f"{self.argv[0]} already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"{what} exited (rc={code}) before it answered:\n{_tail(self.log)}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} did not answer within {timeout}s:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _answers(url: str, ok: Callable[[requests.Response], bool]) -> bool:
    try:
        return ok(requests.get(url, timeout=1))
    except requests.RequestException:
        return False


# --------------------------------------------------------------------------
# docker-registry (distribution 2.8)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryFlavour:
    """How a local registry is configured."""

    auth: tuple[str, str] | None = None  # htpasswd user and password
    readonly: bool = False  # storage.maintenance.readonly: every push is rejected
    deletes: bool = True  # storage.delete.enabled


class LocalRegistry:
    """A ``docker-registry serve`` on 127.0.0.1:PORT with storage under ``workdir``,
    plus the few HTTP calls the tests use to look at what the pipeline did."""

    def __init__(self, workdir: Path, flavour: RegistryFlavour = RegistryFlavour(),
                 binary: Path = Path("/usr/bin/docker-registry")) -> None:
        self.workdir = workdir
        self.flavour = flavour
        self.binary = binary
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "config.yml"
        self.config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        self._process = _Process([str(binary), "serve", str(self.config)], workdir / "registry.log")

    # ---- identity -----------------------------------------------------------
    @property
    def host(self) -> str:
        """What goes in an image reference and in the pipeline's ``registry.host``."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log(self) -> Path:
        return self._process.log

    def __repr__(self) -> str:
        return f"LocalRegistry({self.host}, {self.flavour})"

    # ---- lifecycle ----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        storage: dict[str, Any] = {
            "filesystem": {"rootdirectory": str(self.workdir / "data")},
            "delete": {"enabled": self.flavour.deletes},
        }
        if self.flavour.readonly:
            storage["maintenance"] = {"readonly": {"enabled": True}}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": storage,
            "http": {"addr": self.host, "secret": "pipeline-tests"},
        }
        if self.flavour.auth:
            user, password = self.flavour.auth
            htpasswd = require_tool(shutil.which("htpasswd"), "htpasswd", "apt-get install apache2-utils")
            line = subprocess.run([str(htpasswd), "-Bbn", user, password], capture_output=True,
                                  text=True, check=True).stdout.strip()
            passwd = self.workdir / "htpasswd"
            passwd.write_text(line + "\n")
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(passwd)}}
        return config

    def start(self) -> LocalRegistry:
        self._process.start()
        self._process.wait_until(lambda: _answers(f"{self.url}/v2/", lambda r: r.status_code in (200, 401)),
                                 f"docker-registry on {self.host}")
        return self

    def stop(self) -> None:
        self._process.stop()

    @property
    def running(self) -> bool:
        return self._process.running

    # ---- HTTP API (for assertions) -------------------------------------------
    def _auth(self) -> tuple[str, str] | None:
        return self.flavour.auth

    def get_manifest(self, repo: str, ref: str, method: str = "GET") -> requests.Response:
        """The manifest of REPO at a tag or digest, as pushed (v2/OCI/list/index)."""
        return requests.request(method, f"{self.url}/v2/{repo}/manifests/{ref}",
                                headers={"Accept": ", ".join(MANIFEST_TYPES)}, auth=self._auth(), timeout=10)

    def digest(self, repo: str, ref: str) -> str | None:
        """The manifest digest a tag points at, or None when the registry has no such tag."""
        response = self.get_manifest(repo, ref)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def manifest(self, repo: str, ref: str) -> tuple[str, str, str]:
        """(media type, the exact manifest text, digest) at a tag or digest."""
        response = self.get_manifest(repo, ref)
        response.raise_for_status()
        return response.headers["Content-Type"], response.text, response.headers["Docker-Content-Digest"]

    def tags(self, repo: str) -> list[str]:
        """The repository's tags; [] when it has none (distribution says ``null``) or does not exist."""
        response = requests.get(f"{self.url}/v2/{repo}/tags/list", auth=self._auth(), timeout=10)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def requests_for(self, repo: str, part: str = "") -> list[str]:
        """Access-log lines of requests to /v2/REPO/PART... (e.g. part="blobs/"),
        to see what a client sent; each request is logged once it completed."""
        needle = f"/v2/{repo}/{part}"
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if needle in line and "response completed" in line]


# --------------------------------------------------------------------------
# moto server (ECR, STS)
# --------------------------------------------------------------------------
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Anything that could send boto3 somewhere else than the endpoint under test.
AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS", "AWS_ROLE_ARN",
                    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT``: every AWS service at one endpoint."""

    def __init__(self, workdir: Path, binary: Path) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **MOTO_ENV}
        for name in AWS_ENV_TO_CLEAR:
            env.pop(name, None)
        self._process = _Process([str(binary), "-H", LOCALHOST, "-p", str(self.port)],
                                 workdir / "moto.log", env=env)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> MotoServer:
        self._process.start()
        self._process.wait_until(lambda: _answers(f"{self.url}/moto-api/", lambda r: r.status_code < 500),
                                 f"moto_server on {self.url}")
        return self

    def stop(self) -> None:
        self._process.stop()

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def assumed_roles(self) -> list[str]:
        """The role ARNs assumed through STS since the last reset (moto's state dump)."""
        data = requests.get(f"{self.url}/moto-api/data.json", timeout=10).json()
        return [role["role_arn"] for role in data.get("sts", {}).get("AssumedRole", [])]

    def client(self, service: str, region: str = MOTO_ENV["AWS_DEFAULT_REGION"]) -> Any:
        import boto3  # the pipeline's dependency; imported late so collection does not need it

        return boto3.session.Session(
            aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=region,
        ).client(service, endpoint_url=self.url)


def moto_binary() -> Path:
    """moto_server next to this interpreter (the project venv), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    return require_tool(beside if beside.is_file() else shutil.which("moto_server"), "moto_server",
                        "pip install 'moto[server]' (the project's [test] extra)")


def registry_binary() -> Path:
    return require_tool(shutil.which("docker-registry") or "/usr/bin/docker-registry", "docker-registry",
                        "apt-get install docker-registry")


# --------------------------------------------------------------------------
# fixtures (imported by conftest.py)
# --------------------------------------------------------------------------
REGISTRY_USER = "pipeline"
REGISTRY_PASSWORD = "s3cret-Pa55word"  # distinctive, so a leak into the output is easy to spot


def _session_registry(factory: pytest.TempPathFactory, name: str, flavour: RegistryFlavour) -> Iterator[LocalRegistry]:
    registry = LocalRegistry(factory.mktemp(name), flavour, registry_binary()).start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """No auth, deletes enabled. Shared by the session: tests use their own repositories."""
    yield from _session_registry(tmp_path_factory, "registry", RegistryFlavour())


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """htpasswd basic auth: REGISTRY_USER / REGISTRY_PASSWORD."""
    yield from _session_registry(tmp_path_factory, "auth-registry",
                                 RegistryFlavour(auth=(REGISTRY_USER, REGISTRY_PASSWORD)))


@pytest.fixture(scope="session")
def readonly_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Read-only maintenance mode: every push is rejected by the registry."""
    yield from _session_registry(tmp_path_factory, "readonly-registry", RegistryFlavour(readonly=True))


@pytest.fixture(scope="session")
def nodelete_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Pushes work, manifest deletes are refused (storage.delete.enabled: false)."""
    yield from _session_registry(tmp_path_factory, "nodelete-registry", RegistryFlavour(deletes=False))


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., LocalRegistry]]:
    """Start a registry of one's own (e.g. to stop and restart it); all are stopped afterwards."""
    started: list[LocalRegistry] = []

    def start(flavour: RegistryFlavour = RegistryFlavour()) -> LocalRegistry:
        registry = LocalRegistry(tmp_path / f"registry-{len(started)}", flavour, registry_binary())
        started.append(registry)
        return registry.start()

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"), moto_binary()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoServer]:
    """A blank moto, and an AWS environment for this test and the doit processes it
    starts: fixed test credentials, us-east-1, no profile, no shared config files."""
    moto_server.reset()
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in MOTO_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    yield moto_server
    moto_server.reset()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty docker client config (DOCKER_CONFIG) for this test, so `docker login`
    by the pipeline neither reads nor writes the user's ~/.docker/config.json."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auths": {}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder

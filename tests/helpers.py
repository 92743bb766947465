"""Shared helpers for the integration suite: the doit runner, output parsing,
the fixture-project factory, file editing and Docker inspection/cleanup.

Everything here treats the pipeline as a black box: it is driven only through
``python -m doit -f REPO/dodo.py -d PROJECT ...`` and observed through the
console output, the files under the project folder and the Docker daemon.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors
import yaml
from docker.models.images import Image

REPO = Path(__file__).resolve().parents[1]
DODO = REPO / "dodo.py"
REGISTRY = "127.0.0.1:5000"
ENVIRONMENT = "sandbox"
DEPLOYMENTS = ("alpha", "beta")
CHAIN = ("certs", "common")
CA_BUNDLE = "ca/bundle.pem"
# Stages that build an image; `certs` and `dockerfile:*` only write files.
IMAGE_STAGES = frozenset({"root", *(f"chain:{c}" for c in CHAIN), *(f"build:{d}" for d in DEPLOYMENTS)})
RUN_TIMEOUT = 300.0

_RAN = re.compile(r"^\.  (\S+)\s*$")
_UPTODATE = re.compile(r"^-- (\S+)\s*$")
_DOUBLED_PREFIX = re.compile(r"\b([a-z_]+(?::[\w.-]+)?): \1: ")  # `ERROR: release: release: …`


def is_image_stage(task: str) -> bool:
    return task == "root" or task.startswith(("chain:", "build:"))


# --------------------------------------------------------------------------
# doit output
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    """Outcome of one doit invocation."""

    rc: int
    output: str  # stdout + stderr
    ran_lines: tuple[str, ...] = ()  # every `.  TASK` line, in order, duplicates kept

    @classmethod
    def parse(cls, rc: int, output: str) -> RunResult:
        ran = tuple(m.group(1) for line in output.splitlines() if (m := _RAN.match(line)))
        return cls(rc=rc, output=output, ran_lines=ran)

    @property
    def ran(self) -> set[str]:
        return set(self.ran_lines)

    @property
    def uptodate(self) -> set[str]:
        return {m.group(1) for line in self.output.splitlines() if (m := _UPTODATE.match(line))}

    @property
    def image_stages(self) -> set[str]:
        """The image-building stages (root, chain:*, build:*) that ran."""
        return {t for t in self.ran if is_image_stage(t)}

    def __str__(self) -> str:
        return f"rc={self.rc}\n----- output -----\n{self.output}\n------------------"


def parse_output(output: str) -> tuple[set[str], set[str]]:
    """(ran, uptodate) task names from doit's console output."""
    result = RunResult.parse(0, output)
    return result.ran, result.uptodate


def line_with(output: str, *needles: str) -> str | None:
    """The first line containing every needle (case-insensitive), else None."""
    lowered = [n.lower() for n in needles]
    for line in output.splitlines():
        if all(n in line.lower() for n in lowered):
            return line
    return None


# --------------------------------------------------------------------------
# assertions
# --------------------------------------------------------------------------
def assert_ok(result: RunResult) -> None:
    assert result.rc == 0, f"doit failed\n{result}"
    assert "Traceback" not in result.output, f"traceback in a successful run\n{result}"


def assert_image_stages(result: RunResult, expected: Iterable[str]) -> None:
    """rc 0 and exactly ``expected`` among the image stages ran."""
    assert_ok(result)
    assert result.image_stages == set(expected), f"image stages ran: {sorted(result.image_stages)}\n{result}"


def assert_nothing_ran(result: RunResult) -> None:
    assert_ok(result)
    assert result.ran == set(), f"tasks ran: {sorted(result.ran)}\n{result}"


def assert_clean_failure(result: RunResult, *needles: str) -> None:
    """rc != 0, no traceback, and every needle (case-insensitive) is in the output."""
    assert result.rc != 0, f"expected a failure\n{result}"
    assert "Traceback" not in result.output, f"traceback instead of a message\n{result}"
    for needle in needles:
        assert needle.lower() in result.output.lower(), f"{needle!r} not in output\n{result}"
    doubled = _DOUBLED_PREFIX.search(result.output)
    assert not doubled, f"task named twice: {doubled.group(0)!r}\n{result}"


def assert_reason(result: RunResult, *needles: str) -> None:
    """Some single line of ``doit info`` output mentions all needles."""
    assert line_with(result.output, *needles), f"no line mentions {needles}\n{result}"


# --------------------------------------------------------------------------
# running doit
# --------------------------------------------------------------------------
def doit_command(project_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "doit", "-f", str(DODO), "-d", str(project_dir), *args]


def doit_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # so background runs can be watched line by line
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_doit(project_dir: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = RUN_TIMEOUT) -> RunResult:
    proc = subprocess.run(doit_command(project_dir, *args), check=False, capture_output=True, text=True,
                          env=doit_env(env), timeout=timeout)
    return RunResult.parse(proc.returncode, proc.stdout + proc.stderr)


class BackgroundRun:
    """A doit process started with Popen, in its own process group (like a
    terminal job), output (stdout+stderr) going to a file that can be polled."""

    def __init__(self, project_dir: Path, args: Iterable[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(doit_command(project_dir, *args), stdout=self._out,
                                     stderr=subprocess.STDOUT, env=doit_env(env),
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, line: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.output().splitlines():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"doit exited (rc={self.proc.returncode}) before {line!r}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{line!r} not seen within {timeout}s:\n{self.output()}")

    def signal_group(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` to the whole process group, as a terminal's Ctrl-C does."""
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = RUN_TIMEOUT) -> RunResult:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(f"doit did not exit within {timeout}s:\n{self.output()}") from None
        finally:
            self._out.close()
        return RunResult.parse(rc, self.output())

    def _kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def __enter__(self) -> BackgroundRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._kill()
        self._out.close()


# --------------------------------------------------------------------------
# the fixture project
# --------------------------------------------------------------------------
FAKE_PEM = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUZmFrZS1jYS1mb3ItdGVzdHMtb25seTAKBggqhkjOPQQD
{body}
-----END CERTIFICATE-----
"""


def fake_pem(body: str = "AgAwEjEQMA4GA1UEAwwHZmFrZSBjYTAeFw0yNDAxMDEwMDAwMDBaFw0zNDAxMDEw") -> str:
    return FAKE_PEM.format(body=body)


def custom_dockerfile(deployment: str, *extra: str) -> str:
    """A deployment's Dockerfile.custom; ``extra`` instructions are appended."""
    lines = ["ARG BASE_IMAGE", "FROM ${BASE_IMAGE}", f"RUN echo {deployment} > /name", *extra]
    return "\n".join(lines) + "\n"


def _project_files(rootfs: Path, ns: str) -> dict[str, str]:
    files = {
        "pipeline.yaml": yaml.safe_dump(pipeline_config(ns, rootfs), sort_keys=False),
        CA_BUNDLE: fake_pem(),
        "common/Dockerfile.certs": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY tls-ca-bundle.pem /etc/ssl/bundle.pem\n",
        "common/Dockerfile": (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
            "COPY scripts/hello.sh /opt/common-scripts/hello.sh\n"
            "RUN chmod +x /opt/common-scripts/hello.sh\n"
        ),
        "common/Dockerfile.trailer": "COPY environments/ /opt/environments/\nRUN echo trailer\n",
        "common/scripts/hello.sh": "#!/bin/sh\necho hello from common\n",
        "common/scripts/unused.sh": "#!/bin/sh\necho no layer copies me\n",
        "common/README.txt": "Shared layer sources.\n",
    }
    for dep in DEPLOYMENTS:
        files[f"{dep}/deployment.yaml"] = yaml.safe_dump(
            {"repo": f"{ns}-{dep}", "test": "/opt/environments/test"}, sort_keys=False)
        files[f"{dep}/Dockerfile.custom"] = custom_dockerfile(dep)
        files[f"{dep}/environments/test"] = f"#!/bin/sh\nset -e\ntest \"$(cat /name)\" = {dep}\necho {dep} ok\n"
    return files


def pipeline_config(ns: str, rootfs: Path) -> dict[str, Any]:
    return {
        "environment": ENVIRONMENT,
        "frozen": False,
        "builder": {"buildkit": False},
        "namespace": ns,
        "root": {"rootfs": str(rootfs)},
        "certs": {"source": CA_BUNDLE, "target": "common/tls-ca-bundle.pem"},
        "chain": [
            {"name": "certs", "dockerfile": "common/Dockerfile.certs", "context": "common"},
            {"name": "common", "dockerfile": "common/Dockerfile", "context": "common"},
        ],
        "trailer": "common/Dockerfile.trailer",
        "registry": {"kind": "generic", "host": REGISTRY},
    }


@dataclass
class Project:
    """A temporary pipeline project: ``root`` is doit's ``-d`` folder and holds
    ``deployments/``; the doit state and ``build/`` appear next to it."""

    root: Path
    ns: str
    rootfs: Path
    _bg_count: int = field(default=0, repr=False)

    # ---- files -------------------------------------------------------------
    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    def path(self, rel: str) -> Path:
        """A path relative to deployments/."""
        return self.deployments / rel

    def read(self, rel: str) -> str:
        return self.path(rel).read_text()

    def write(self, rel: str, text: str, *, executable: bool = False) -> Path:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if executable:
            target.chmod(0o755)
        return target

    def append(self, rel: str, text: str) -> None:
        """Append to a file, keeping its mode (a real content change)."""
        with self.path(rel).open("a") as fh:
            fh.write(text)

    def replace(self, rel: str, old: str, new: str) -> None:
        text = self.read(rel)
        assert old in text, f"{old!r} not in {rel}"
        self.path(rel).write_text(text.replace(old, new))

    def update_yaml(self, rel: str, mutate: Callable[[dict[str, Any]], None]) -> None:
        data = yaml.safe_load(self.read(rel))
        mutate(data)
        self.path(rel).write_text(yaml.safe_dump(data, sort_keys=False))

    def build_log(self, task: str) -> Path:
        return self.root / "build" / "logs" / f"{task}.log"

    def doit_db_files(self) -> list[Path]:
        return sorted(self.root.glob(".doit.db*"))

    # ---- image names -------------------------------------------------------
    def local_image(self, name: str) -> str:
        """NS/root:latest, NS/certs:latest, NS/common:latest."""
        return f"{self.ns}/{name}:latest"

    def mission_tag(self, deployment: str) -> str:
        return f"{REGISTRY}/{self.ns}-{deployment}:unscanned-latest-{ENVIRONMENT}"

    # ---- doit --------------------------------------------------------------
    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> RunResult:
        return run_doit(self.root, *args, env=env, timeout=timeout)

    def info(self, task: str, *args: str) -> RunResult:
        return self.run("info", task, *args)

    def start(self, *args: str, env: dict[str, str] | None = None) -> BackgroundRun:
        self._bg_count += 1
        log = self.root.parent / f"{self.root.name}-bg{self._bg_count}.out"
        return BackgroundRun(self.root, args, log, env=env)


def make_project(base: Path, ns: str, rootfs: Path) -> Project:
    """Write the fixture project under ``base/project`` (see the suite's spec)."""
    project = Project(root=base / "project", ns=ns, rootfs=rootfs)
    for rel, text in _project_files(rootfs, ns).items():
        project.write(rel, text, executable=rel.endswith((".sh", "environments/test")))
    return project


def build_all(project: Project, *args: str) -> RunResult:
    """Run doit and require a complete, successful first build."""
    result = project.run(*args)
    assert_image_stages(result, IMAGE_STAGES)
    return result


# --------------------------------------------------------------------------
# busybox rootfs
# --------------------------------------------------------------------------
def build_busybox_rootfs(workdir: Path, busybox: Path = Path("/bin/busybox")) -> Path:
    """A minimal rootfs tarball: /bin/busybox with a relative symlink per applet,
    /etc/passwd and /etc/group for root, /tmp and /root."""
    tree = workdir / "rootfs"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(busybox, tree / "bin" / "busybox")
    (tree / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    (tree / "etc").mkdir()
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc" / "group").write_text("root:x:0:\n")
    for d in ("tmp", "root"):
        (tree / d).mkdir()
    (tree / "tmp").chmod(0o1777)

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tarball = workdir / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for child in sorted(tree.iterdir()):
            tar.add(child, arcname=child.name, filter=as_root)
    return tarball


# --------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------
def import_rootfs(client: docker.DockerClient, tarball: Path, repository: str, tag: str) -> Image:
    client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    return client.images.get(f"{repository}:{tag}")


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def labels_of(client: docker.DockerClient, ref: str) -> dict[str, str]:
    return client.images.get(ref).labels or {}


@dataclass(frozen=True)
class ImageSummary:
    id: str
    tags: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return self.id[:19]


def _owned_by(tags: Iterable[str], ns: str) -> bool:
    return any(t.startswith((f"{ns}/", f"{REGISTRY}/{ns}-")) or f"/{ns}-" in t for t in tags)


def namespace_images(client: docker.DockerClient, ns: str) -> list[ImageSummary]:
    """Every image of the namespace: labelled ones (tagged, untagged, intermediate)
    plus any tagged NS/..., REGISTRY/NS-... or HOST/NS-... (e.g. an imported base image).

    Uses the list endpoint only (no per-image inspect), so images that other processes
    remove meanwhile cannot make it fail."""
    def summaries(**filters: Any) -> list[ImageSummary]:
        rows = client.api.images(all=True, filters=filters or None)
        return [ImageSummary(r["Id"], tuple(t for t in r.get("RepoTags") or () if t != "<none>:<none>")) for r in rows]

    found = {i.id: i for i in summaries(label=f"pipeline.namespace={ns}")}
    found.update({i.id: i for i in summaries() if _owned_by(i.tags, ns)})
    return list(found.values())


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    image_id: str

    @property
    def short_id(self) -> str:
        return self.id[:12]


def namespace_containers(client: docker.DockerClient, ns: str, image_ids: Iterable[str] = ()) -> list[ContainerSummary]:
    """Containers labelled with the namespace or made from its images (list endpoint only: race-free)."""
    def summaries(**filters: Any) -> list[ContainerSummary]:
        return [ContainerSummary(r["Id"], r.get("ImageID", "")) for r in client.api.containers(all=True, filters=filters or None)]

    found = {c.id: c for c in summaries(label=f"pipeline.namespace={ns}")}
    ids = set(image_ids)
    if ids:
        found.update({c.id: c for c in summaries() if c.image_id in ids})
    return list(found.values())


def cleanup_namespace(client: docker.DockerClient, ns: str, rounds: int = 10) -> list[str]:
    """Remove all containers and images of ``ns``; returns what could not be removed."""
    images = namespace_images(client, ns)
    for container in namespace_containers(client, ns, (i.id for i in images)):
        try:
            client.api.remove_container(container.id, force=True)
        except docker.errors.APIError:  # includes NotFound
            pass
    for _ in range(rounds):  # children before parents: retry until nothing is left
        images = namespace_images(client, ns)
        if not images:
            return []
        for image in images:
            for ref in image.tags or [image.id]:
                try:
                    client.images.remove(ref, force=True)
                except (docker.errors.ImageNotFound, docker.errors.APIError):
                    pass
    leftover = namespace_images(client, ns) + namespace_containers(client, ns)
    return [getattr(obj, "short_id", repr(obj)) for obj in leftover]


def run_in_image(client: docker.DockerClient, ref: str, script: str) -> str:
    """The stdout of ``sh -c script`` in a new container of ``ref`` (removed afterwards).

    Not ``containers.run(remove=True)``: under load it can return before the logs are read,
    giving an empty string for a command that printed.
    """
    container = client.containers.create(ref, ["sh", "-c", script])
    try:
        container.start()
        status = container.wait(timeout=120)
        out = container.logs(stdout=True, stderr=False).decode()
        if status.get("StatusCode"):
            err = container.logs(stdout=False, stderr=True).decode()
            raise AssertionError(f"`{script}` in {ref} exited {status['StatusCode']}: {err or out}")
        return out
    finally:
        container.remove(force=True)


def count_ran(results: Iterable[RunResult]) -> Counter[str]:
    """How often each task ran across several doit runs."""
    counter: Counter[str] = Counter()
    for result in results:
        counter.update(result.ran_lines)
    return counter


def sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


# --------------------------------------------------------------------------
# registry features: push, promote, pull, delete, login, release
# --------------------------------------------------------------------------
BUILD_TAG = f"unscanned-latest-{ENVIRONMENT}"  # deployment.yaml tags.build, the default
PROMOTED_TAG = f"latest-{ENVIRONMENT}"  # deployment.yaml tags.promoted, the default
FAST = {"retries": 1, "backoff": 0.1}  # keep failing registry calls short in tests
ECR_ACCOUNT = "123456789012"
ECR_REGION = "us-east-1"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def repo_of(project: Project, deployment: str) -> str:
    """The repository of a deployment in the fixture project: NS-DEPLOYMENT."""
    return f"{project.ns}-{deployment}"


def image_ref(project: Project, deployment: str, host: str, tag: str = BUILD_TAG) -> str:
    """HOST/NS-DEPLOYMENT:TAG (the mission image's local tag when ``tag`` is the build tag)."""
    return f"{host}/{repo_of(project, deployment)}:{tag}"


def set_registry(project: Project, registry: dict[str, Any], deployment: str | None = None) -> None:
    """Replace the shared registry (pipeline.yaml), or one deployment's (deployment.yaml)."""
    rel = f"{deployment}/deployment.yaml" if deployment else "pipeline.yaml"
    project.update_yaml(rel, lambda c: c.update(registry=registry))


def use_generic_registry(project: Project, host: str, deployment: str | None = None, **extra: Any) -> dict[str, Any]:
    """Point the project at a plain-http registry with fast retries; ``extra`` adds or
    overrides keys (username_env, retries, ...). Returns the mapping written."""
    registry = {"kind": "generic", "host": host, "insecure": True, **FAST, **extra}
    set_registry(project, registry, deployment)
    use_offline_scan(project)
    return registry


def use_ecr_registry(project: Project, endpoint_url: str, host: str, deployment: str | None = None,
                     **extra: Any) -> dict[str, Any]:
    """Point the project at ECR served by moto (``endpoint_url``), with a local registry
    as the data plane (``host``)."""
    registry = {"kind": "ecr", "account": ECR_ACCOUNT, "region": ECR_REGION, "endpoint_url": endpoint_url,
                "host": host, **FAST, **extra}
    set_registry(project, registry, deployment)
    use_offline_scan(project)
    return registry


def use_offline_scan(project: Project) -> None:
    """promote waits for scan:NAME; give the scan a local OSV database whose one advisory
    matches nothing (no findings, no network, no ECR scan), so the registry tests see
    only registry behaviour. The busybox fixture images have no packages to inventory,
    which scan.require_inventory would (rightly) call a scan that could not be done."""
    import json

    advisory = {"id": "PT-0000-0000", "modified": "2026-01-01T00:00:00Z", "summary": "matches nothing",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "pipeline-tests-no-such-package"},
                              "versions": ["0.0.0"]}]}
    project.write("osv/PT-0000-0000.json", json.dumps(advisory))
    project.update_yaml("pipeline.yaml", lambda c: c.update(scan={"backend": "osv", "osv": "osv",
                                                                  "require_inventory": False}))


def registry_record(project: Project, deployment: str) -> dict[str, Any]:
    """build/registry/NAME.json, written by push:NAME."""
    import json

    return json.loads((project.root / "build" / "registry" / f"{deployment}.json").read_text())


def digests_in(output: str) -> set[str]:
    return set(_DIGEST.findall(output))


def summary_rows(output: str, *, raw: bool = False) -> dict[str, str]:
    """The summary table printed at the end of a run: stage -> 'ran' / 'up to date' / 'FAILED'
    ('built' and 'pulled', which image stages say when they ran, count as 'ran' unless ``raw``)."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("stage ") and "result" in line]
    assert starts, f"no summary table in the output:\n{output}"
    rows: dict[str, str] = {}
    for line in lines[starts[-1] + 1:]:
        if not line.strip() or line[0].isdigit():  # the closing "N stages: ..." line
            break
        name, rest = line.split(None, 1)
        result = next((r for r in ("up to date", "FAILED", "ran", "built", "pulled") if rest.startswith(r)),
                      rest.split()[0])
        rows[name] = result if raw or result not in ("built", "pulled") else "ran"
    return rows


def assert_not_leaked(result: RunResult, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.output, f"secret {secret[:3]}… appears in the output\n{result}"


def tiny_image(client: docker.DockerClient, ns: str, ref: str, content: str = "hello") -> Image:
    """A one-file image FROM scratch, labelled with the namespace (so the namespace
    fixture removes it and every copy pulled back), tagged ``ref``."""
    import io

    files = {"Dockerfile": f"FROM scratch\nLABEL pipeline.namespace={ns}\nCOPY f /f\n", "f": content}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, tag=ref, rm=True)
    return image


def push_with_sdk(client: docker.DockerClient, ref: str, auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Push ``ref`` through the Docker SDK; returns the decoded stream (errors are in it, not raised)."""
    repository, tag = ref.rsplit(":", 1)
    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    return list(client.images.push(repository, tag, stream=True, decode=True, auth_config=auth_config))


# --------------------------------------------------------------------------
# hands-on commands (exec, sh, dev, run_lab, ...)
# --------------------------------------------------------------------------
def run_doit_input(project: Project, *args: str, input: str, env: dict[str, str] | None = None,
                   timeout: float = RUN_TIMEOUT) -> RunResult:
    """Run doit with ``input`` on its stdin (no TTY), e.g. commands for `doit sh:NAME`."""
    proc = subprocess.run(doit_command(project.root, *args), check=False, input=input, capture_output=True,
                          text=True,
                          env=doit_env(env), timeout=timeout)
    return RunResult.parse(proc.returncode, proc.stdout + proc.stderr)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------
# inspection stages (test, freeze, manifest, history)
# --------------------------------------------------------------------------
def assert_no_containers(client: docker.DockerClient, ns: str) -> None:
    """No container of the namespace (by label, or made from one of its images) is left, running or stopped.

    Uses the low-level API's listings only, so images that other test runs remove meanwhile do not matter.
    """
    prefixes = (f"{ns}/", f"{REGISTRY}/{ns}-")
    ids = {i["Id"] for i in client.api.images(all=True)
           if (i.get("Labels") or {}).get("pipeline.namespace") == ns
           or any(t.startswith(prefixes) for t in i.get("RepoTags") or ())}
    left = [c.get("Names") for c in client.api.containers(all=True)
            if (c.get("Labels") or {}).get("pipeline.namespace") == ns or c.get("ImageID") in ids]
    assert not left, f"containers left behind: {left}"


def load_manifest(project: Project, deployment: str) -> dict[str, Any]:
    return yaml.safe_load((project.root / "build" / "manifests" / f"{deployment}.yaml").read_text())


def assert_stage_result(result: RunResult, task: str, expected: str) -> None:
    """The summary table's result for ``task`` ('ran', 'up to date', 'FAILED').
    (doit prints `.  TASK` when a task starts, so a failed task is in ``result.ran`` too.)"""
    rows = summary_rows(result.output)
    assert rows.get(task) == expected, f"{task}: {rows.get(task, 'not in the summary')}, expected {expected}\n{result}"

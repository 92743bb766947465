"""End to end: the bundled demo deployment builds from nothing and really runs JupyterLab.

Slow (debootstrap, apt and pip inside containers: a few minutes) and needs the
Debian mirror and PyPI; deselect with ``-m "not e2e"``.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import docker
import pytest
import requests
import yaml
from helpers import REPO, assert_image_stages, assert_nothing_ran, run_doit

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

DEMO_STAGES = {"root", "chain:certs", "chain:notebook", "chain:common", "build:demo"}


def copy_demo(tmp_path: Path, ns: str) -> Path:
    """The repository's deployments/ under its own namespace and repo, so the user's demo is untouched."""
    project = tmp_path / "demo-project"
    shutil.copytree(REPO / "deployments", project / "deployments", ignore=shutil.ignore_patterns("tls-ca-bundle.pem"))
    config_path = project / "deployments" / "pipeline.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["namespace"] = ns
    config_path.write_text(yaml.safe_dump(config))
    dep_path = project / "deployments" / "demo" / "deployment.yaml"
    dep = yaml.safe_load(dep_path.read_text())
    dep["repo"] = f"{ns}-demo"
    dep_path.write_text(yaml.safe_dump(dep))
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_builds_runs_jupyterlab_and_then_is_a_noop(
    tmp_path: Path, namespace: str, docker_client: docker.DockerClient
) -> None:
    project = copy_demo(tmp_path, namespace)
    first = run_doit(project, timeout=1500)
    assert first.rc == 0, first.output[-4000:]
    assert_image_stages(first, DEMO_STAGES)
    image = f"127.0.0.1:5000/{namespace}-demo:unscanned-latest-sandbox"

    version = docker_client.containers.run(image, ["jupyter", "lab", "--version"], remove=True).decode().strip()
    assert version.split(".")[0] == "4"
    # The deployment's own test command imports the environment's packages (pip worked through the proxy).
    out = docker_client.containers.run(image, ["/opt/environments/test"], remove=True).decode()
    assert "all checks passed" in out

    port = free_port()
    container = docker_client.containers.run(
        image, detach=True, ports={"8888/tcp": ("127.0.0.1", port)}, labels={"pipeline.namespace": namespace}
    )
    try:
        deadline, answer = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(1)
        assert answer is not None and answer.status_code == 200, container.logs()[-2000:]
        assert "version" in answer.json()
    finally:
        container.remove(force=True)

    # Floating pins that moved on PyPI are only reported (drift:demo): plain doit writes nothing into
    # the tree, and the trailer does not copy env-frozen/ in floating mode, so nothing reruns.
    frozen_dir = project / "deployments" / "demo" / "env-frozen"
    committed = {p: p.read_bytes() for p in frozen_dir.rglob("*") if p.is_file()}
    again = run_doit(project)
    assert_nothing_ran(again)
    assert {p: p.read_bytes() for p in frozen_dir.rglob("*") if p.is_file()} == committed

    # A real input change: the stage's first line says why, and `doit info` still says so afterwards.
    with (project / "deployments" / "demo" / "WELCOME.md").open("a") as fh:
        fh.write("\nOne more line.\n")
    rerun = run_doit(project, timeout=1500)
    assert rerun.rc == 0, rerun.output[-4000:]
    assert_image_stages(rerun, {"build:demo"})
    lines = rerun.output.splitlines()
    assert lines[lines.index(".  build:demo") + 1] == "build:demo: rebuilding: file WELCOME.md changed", rerun
    info = run_doit(project, "info", "build:demo")
    print(info.output)  # the README's example comes from here (pytest -s)
    assert "status     : up-to-date" in info.output and "rebuilt because file WELCOME.md changed" in info.output

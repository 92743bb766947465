"""A second Docker engine for the scaling tests: its own socket, data root and bridge.

It gets its own bridge interface (never ``--bridge none``, which would take
the main engine's docker0 down with it) and no iptables rules of its own.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

BRIDGE = "pipetest0"
BRIDGE_ADDR = "172.31.254.1/24"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


class SecondEngine:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> SecondEngine:
        if shutil.which("dockerd") is None or shutil.which("ip") is None or os.geteuid() != 0:
            reason = "a second dockerd needs root, dockerd and iproute2"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        if _ip("link", "show", BRIDGE).returncode != 0:
            _ip("link", "add", BRIDGE, "type", "bridge")
            _ip("addr", "add", BRIDGE_ADDR, "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        log = self._log = (self.workdir / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.host, "--data-root", str(self.workdir / "data"),
             "--exec-root", str(self.workdir / "exec"), "--pidfile", str(self.workdir / "docker.pid"),
             "--bridge", BRIDGE, "--iptables=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            # Asked through the CLI: a Python client connecting to a socket that does not exist yet
            # leaks that socket inside docker-py.
            if self.socket.exists() and subprocess.run(
                ["docker", "-H", self.host, "version"], capture_output=True, check=False
            ).returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"the second dockerd did not start; see {self.workdir / 'dockerd.log'}")

    @contextlib.contextmanager
    def client(self) -> Iterator[docker.DockerClient]:
        client = docker.DockerClient(base_url=self.host)
        try:
            yield client
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()


@pytest.fixture(scope="session")
def engine_b() -> Iterator[SecondEngine]:
    # Outside pytest's tmp dirs (the engine's overlay mounts must be gone before removal), and
    # short: unix socket paths are limited to about 100 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-eb-", dir="/var/tmp"))  # nosec B108 - dockerd data root, not a shared temp file
    engine = SecondEngine(workdir)
    try:
        yield engine.start()
    finally:
        engine.stop()
        unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def unmount_below(path: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

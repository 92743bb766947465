"""Beyond one machine: the registry as a stage cache, a second engine, parallel builds."""
from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import docker
import pytest
from engines import SecondEngine
from helpers import IMAGE_STAGES, Project, assert_clean_failure, count_ran, run_doit, summary_rows
from services import LocalRegistry, free_port

pytestmark = pytest.mark.docker


def use_cache(project: Project, host: str, retries: int = 1) -> None:
    project.update_yaml("pipeline.yaml", lambda c: c.update(
        registry={"kind": "generic", "host": host, "retries": retries, "backoff": 0.1},
        cache={"repo": f"{project.ns}-cache"},
    ))


def results(output: str) -> dict[str, str]:
    return summary_rows(output, raw=True)


def fresh_copy(project: Project, dest: Path) -> Path:
    """The project as a fresh CI runner sees it: same sources, no .doit.db, no build/, and the modes
    of a checkout under umask 002 (0664/0775), which must not change any key."""
    shutil.copytree(project.deployments, dest / "deployments", symlinks=True)
    for path in (dest / "deployments").rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o020)
    return dest


def image_ids(client: docker.DockerClient, project: Project) -> dict[str, tuple[str, str]]:
    refs = [project.local_image(n) for n in ("root", "certs", "common")]
    refs += [f"{ref}" for ref in _mission_refs(project)]
    out = {}
    for ref in refs:
        image = client.images.get(ref)
        out[ref] = (image.id, image.labels.get("pipeline.inputs", ""))
    return out


def _mission_refs(project: Project) -> list[str]:
    config = project.read("pipeline.yaml")
    host = next(line.split("host:")[1].strip().rstrip("}").split(",")[0] for line in config.splitlines() if "host:" in line)
    return [f"{host}/{project.ns}-{d}:unscanned-latest-sandbox" for d in ("alpha", "beta")]


def clean_engine(engine: SecondEngine, ns: str) -> None:
    with engine.client() as client:
        _remove_namespace(client, ns)


def _remove_namespace(client: docker.DockerClient, ns: str) -> None:
    for _ in range(5):
        images = client.images.list(all=True, filters={"label": f"pipeline.namespace={ns}"})
        if not images:
            return
        for image in images:
            for ref in image.tags or [image.id]:
                try:
                    client.images.remove(ref, force=True)
                except docker.errors.APIError:
                    pass


def test_fresh_runner_on_another_engine_pulls_every_stage(
    project: Project, registry: LocalRegistry, engine_b: SecondEngine, docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    use_cache(project, registry.host)
    first = project.run()
    assert first.rc == 0, first.output[-3000:]
    assert first.image_stages == set(IMAGE_STAGES)
    assert all(row == "built" for name, row in results(first.output).items() if name in IMAGE_STAGES)
    on_a = image_ids(docker_client, project)

    runner = fresh_copy(project, tmp_path / "runner")
    env = {"DOCKER_HOST": engine_b.host}
    try:
        second = run_doit(runner, env=env)
        assert second.rc == 0, second.output[-3000:]
        rows = results(second.output)
        assert {name for name, row in rows.items() if row == "pulled"} == set(IMAGE_STAGES), rows
        assert "Step 1/" not in second.output  # nothing was built
        with engine_b.client() as client_b:
            on_b = image_ids(client_b, Project(runner, project.ns, project.rootfs))
        assert on_b == on_a  # same image IDs and the same pipeline.inputs labels
        info = run_doit(runner, "info", "chain:common", env=env)
        assert "pulled from cache" in info.output, info.output
        assert run_doit(runner, env=env).ran.isdisjoint(IMAGE_STAGES)
    finally:
        clean_engine(engine_b, project.ns)


def test_poisoned_cache_entry_is_rejected_and_the_stage_built(
    project: Project, registry: LocalRegistry, engine_b: SecondEngine, docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    use_cache(project, registry.host)
    assert project.run().rc == 0
    key = json.loads((project.root / "build" / "keys" / "chain-common.json").read_text())["digest"].split(":")[1]
    poisoned = f"{registry.host}/{project.ns}-cache:chain-common-{key}"
    docker_client.images.get(project.local_image("root")).tag(poisoned)  # another stage's image, another label
    for line in docker_client.images.push(poisoned, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(poisoned)

    runner = fresh_copy(project, tmp_path / "runner")
    try:
        result = run_doit(runner, env={"DOCKER_HOST": engine_b.host})
        assert result.rc == 0, result.output[-3000:]
        assert "rejected" in result.output
        rows = results(result.output)
        assert rows["chain:common"] == "built" and rows["chain:certs"] == "pulled", rows
    finally:
        clean_engine(engine_b, project.ns)


class SilentRegistry:
    """A TCP port that accepts connections and never answers (a hung registry); counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def assert_cache_skipped_once(result, host: str) -> None:
    assert result.rc == 0, result.output[-3000:]
    assert result.image_stages == set(IMAGE_STAGES)
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if "WARNING" in line and "cache" in line]
    assert len(warnings) == 1 and "stage cache" in warnings[0] and "is unavailable" in warnings[0], result.output
    assert host in warnings[0], warnings
    summary = [line for line in result.output.splitlines() if line.startswith("stage cache ")]
    assert len(summary) == 1 and "skipped for the rest of this run" in summary[0], result.output
    assert "built locally" in summary[0]


def test_registry_down_while_the_cache_is_on_builds_locally(project: Project) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    use_cache(project, host, retries=0)
    result = project.run()
    assert_cache_skipped_once(result, host)
    assert "connection refused" in result.output


def test_a_hung_cache_registry_costs_one_timeout_for_the_whole_run(project: Project) -> None:
    silent = SilentRegistry()
    try:
        use_cache(project, silent.host)
        project.update_yaml("pipeline.yaml", lambda c: c["cache"].update(connect_timeout=1, timeout=2))
        result = project.run(timeout=120)  # before: ~86 s per image stage (lookup, then push timeouts)
        assert_cache_skipped_once(result, silent.host)
        assert "no answer within 2 s" in result.output, result.output
        assert len(silent.connections) == 1, f"{len(silent.connections)} connections to a hung cache"
    finally:
        silent.close()


def test_parallel_run_builds_each_image_exactly_once(project: Project) -> None:
    project.write("gamma/deployment.yaml", f"repo: {project.ns}-gamma\ntest: /opt/environments/test\n")
    project.write("gamma/Dockerfile.custom", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo gamma > /name\n")
    project.write("gamma/environments/test", "#!/bin/sh\ntest \"$(cat /name)\" = gamma\n", executable=True)
    for mode in ("thread", "process"):
        if mode == "process":
            for dep in ("alpha", "beta", "gamma"):
                project.append(f"{dep}/Dockerfile.custom", f"RUN echo {mode} >> /name.log\n")
        result = project.run("-n", "4", "-P", mode)
        assert result.rc == 0, result.output[-3000:]
        ran = count_ran([result])
        builds = {f"build:{d}" for d in ("alpha", "beta", "gamma")}
        expected = (IMAGE_STAGES | builds) if mode == "thread" else builds
        assert {t for t, n in ran.items() if t in expected and n == 1} == expected, ran
        assert all(n == 1 for n in ran.values()), ran
        assert "changed size during iteration" not in result.output  # the shared hash cache
        for dep in ("alpha", "beta", "gamma"):
            log = project.build_log(f"build:{dep}").read_text()
            others = {"alpha", "beta", "gamma"} - {dep}
            assert not any(f"build:{o}:" in log for o in others), f"build:{dep}.log mixes in other tasks"


def test_unknown_docker_context_is_one_clear_line(project: Project) -> None:
    result = project.run(env={"DOCKER_CONTEXT": "nosuchcontext"})
    assert_clean_failure(result, "nosuchcontext")

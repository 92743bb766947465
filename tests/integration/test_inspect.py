"""test:DEPLOYMENT: the test command runs in a fresh container, reruns only for a new image,
fails with one clear line, and never leaves a container behind."""
from __future__ import annotations

import json

import docker
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    assert_no_containers,
    assert_nothing_ran,
    assert_ok,
    assert_reason,
    image_id,
    line_with,
)

pytestmark = pytest.mark.docker


def record(project: Project, deployment: str) -> dict | None:
    path = project.root / "build" / "tests" / f"{deployment}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_test_passes_records_and_is_up_to_date(docker_client: docker.DockerClient, built: Project) -> None:
    for dep in ("alpha", "beta"):
        assert f"{dep} ok" in built.build_log(f"test:{dep}").read_text()
        assert record(built, dep) == {"image": image_id(docker_client, built.mission_tag(dep)),
                                      "command": "/opt/environments/test", "ref": built.mission_tag(dep), "passed": True}
    assert_no_containers(docker_client, built.ns)
    again = built.run()
    assert_nothing_ran(again)
    assert {"test:alpha", "test:beta"} <= again.uptodate, again


def test_rebuilt_image_is_retested_unchanged_one_is_not(built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo v2 > /v2\n")
    info = built.info("test:alpha")
    assert "changed since the last passing test" in info.output or "build:alpha" in info.output, info
    result = built.run()
    assert_ok(result)
    assert {"build:alpha", "test:alpha"} <= result.ran, result
    assert "test:beta" in result.uptodate, result
    assert "alpha ok" in result.output


def test_failing_test_fails_with_exit_code_and_leaves_no_container(
    docker_client: docker.DockerClient, built: Project
) -> None:
    built.write("alpha/environments/test", "#!/bin/sh\necho failing-marker\nexit 3\n", executable=True)
    result = built.run("deployment=alpha")
    assert_clean_failure(result, "test:alpha", "exited with 3", "failing-marker")
    assert "build:alpha" in result.ran, result
    last = record(built, "alpha")
    assert last is not None and last["passed"] is False and "exited with 3" in last["error"], last
    assert_no_containers(docker_client, built.ns)
    # the failure is not remembered as a pass
    assert_reason(built.info("test:alpha"), "last test", "failed", "exited with 3")
    assert_clean_failure(built.run("deployment=alpha"), "test:alpha", "exited with 3")


def test_missing_test_command(docker_client: docker.DockerClient, built: Project) -> None:
    built.update_yaml("alpha/deployment.yaml", lambda d: d.update(test="/nope"))
    info = built.info("test:alpha")
    assert "test command changed" in info.output, info
    result = built.run("test:alpha")
    assert_clean_failure(result, "test:alpha", "/nope", "not found", "deployment.yaml")
    assert "exited with" not in result.output, result
    assert_no_containers(docker_client, built.ns)


def test_timeout_stops_and_removes_the_container(docker_client: docker.DockerClient, project: Project) -> None:
    project.write("alpha/environments/test", "#!/bin/sh\necho started-marker\nsleep 30\n", executable=True)
    project.update_yaml("alpha/deployment.yaml", lambda d: d.update(test_timeout=2))
    result = project.run("deployment=alpha", "test:alpha", timeout=120)
    assert_clean_failure(result, "test:alpha", "did not finish within 2 s", "test_timeout")
    assert "started-marker" in result.output
    assert_no_containers(docker_client, project.ns)


def test_history_table_newest_first_with_total(built: Project) -> None:
    first = built.run("history:alpha")
    assert_ok(first)
    lines = first.output.splitlines()
    header = next(i for i, line in enumerate(lines) if "SIZE" in line and "CUMULATIVE" in line and "INSTRUCTION" in line)
    trailer = next(i for i, line in enumerate(lines) if "RUN echo trailer" in line)
    custom = next(i for i, line in enumerate(lines) if "RUN echo alpha > /name" in line)
    total = next(i for i, line in enumerate(lines) if line.startswith("total "))
    assert header < trailer < custom < total, first.output
    assert any(line.startswith("*") for line in lines[header:total]), "largest layers not marked"
    # the classic builder's `COPY file:<sha256> in DEST`: the hash is shortened, the destination kept
    assert line_with(first.output, "COPY file:", "… in /opt/common-scripts/hello.sh"), first.output
    # a view: never cached
    again = built.run("history:alpha")
    assert "history:alpha" in again.ran, again


def test_history_full_shows_the_whole_instruction(built: Project) -> None:
    long_run = "RUN echo " + "-".join(["long-instruction"] * 8) + " end-marker > /long"
    built.append("alpha/Dockerfile.custom", long_run + "\n")
    assert_ok(built.run("build:alpha"))
    short = built.run("history:alpha")
    assert_ok(short)
    assert "end-marker" not in short.output and "RUN echo long-instruction-long" in short.output, short
    full = built.run("history:alpha", "--full")
    assert_ok(full)
    assert long_run in full.output, full


def test_history_of_a_missing_image(project: Project) -> None:
    result = project.run("history:alpha")
    assert_clean_failure(result, "history:alpha", project.mission_tag("alpha"), "does not exist", "doit build:alpha")

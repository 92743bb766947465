"""Hands-on commands against the busybox fixture: exec, sh, root_sh, dev, cp, env_list, env_export, run_lab."""
from __future__ import annotations

import fcntl
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    assert_ok,
    build_all,
    custom_dockerfile,
    free_port,
    run_doit_input,
)

from pipeline.tasks.hands_on_adapters import command_line

pytestmark = pytest.mark.docker


def lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines()]


def containers_of(client: docker.DockerClient, ns: str) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"pipeline.namespace={ns}"})]


# -- exec ---------------------------------------------------------------------------------------

def test_exec_streams_output_and_follows_the_exit_code(docker_client: docker.DockerClient, built: Project) -> None:
    ok = built.run("exec:alpha", "--", "sh", "-c", "cat /name; echo out-$((6*7))")
    assert_ok(ok)
    assert {"alpha", "out-42"} <= set(lines(ok.output)), ok
    without_dashes = built.run("exec:beta", "cat", "/name")
    assert_ok(without_dashes)
    assert "beta" in lines(without_dashes.output), without_dashes

    # doit reads every word with "=" as a variable; exec takes them back
    with_equals = built.run("exec:alpha", "--", "sh", "-c", 'x=4; echo "x=$x" "$1"', "sh", "six==1.16.0")
    assert_ok(with_equals)
    assert "x=4 six==1.16.0" in lines(with_equals.output), with_equals

    failed = built.run("exec:alpha", "--", "sh", "-c", "echo before; exit 7")
    assert_clean_failure(failed, "exec:alpha: `sh -c 'echo before; exit 7'` exited with 7")
    assert "before" in lines(failed.output), failed
    assert containers_of(docker_client, built.ns) == []


def test_command_line_takes_back_words_with_equals() -> None:
    argv = ["-d", "p", "deployment=a", "exec:a", "--", "env", "A=1", "sh", "-c", "echo $A"]
    assert command_line("exec:a", ["env", "sh", "-c", "echo $A"], argv) == ["env", "A=1", "sh", "-c", "echo $A"]
    assert command_line("exec:a", ["true"], ["exec:a", "true"]) == ["true"]
    assert command_line("exec:a", ["x"], ["exec:b", "x=1", "x"]) == ["x"]  # another task: doit's words
    assert command_line("cp:a", ["/a", "b"], ["cp:a", "--", "/a", "/c=d", "b"]) == ["/a", "/c=d", "b"]


def test_exec_without_a_command(project: Project) -> None:
    assert_clean_failure(project.run("exec:alpha"), "give a command: doit exec:alpha -- CMD ARGS")
    assert_clean_failure(project.run("exec:alpha", "--"), "give a command")


def test_exec_needs_the_built_image(project: Project) -> None:
    result = project.run("exec:alpha", "--", "true")
    assert_clean_failure(result, f"image {project.mission_tag('alpha')} does not exist", "run `doit build:alpha` first")


def test_hands_on_commands_do_not_wait_for_the_run_lock(built: Project) -> None:
    with (built.root / ".pipeline.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = built.run("exec:alpha", "--", "cat", "/name", env={"PIPELINE_LOCK_TIMEOUT": "0"})
    assert_ok(result)
    assert "alpha" in lines(result.output)


def test_run_args_from_config_and_environment(built: Project) -> None:
    built.update_yaml("pipeline.yaml", lambda c: c.update(run={"args": ["-e", "TOP=shared"]}))
    built.update_yaml("alpha/deployment.yaml", lambda c: c.update(run={"args": ["-e", "FOO=bar"]}))
    result = built.run("exec:alpha", "--", "sh", "-c", 'echo "top=$TOP foo=$FOO baz=$BAZ"',
                       env={"PIPELINE_RUN_ARGS": "-e 'BAZ=two words'"})
    assert_ok(result)
    assert "top=shared foo=bar baz=two words" in lines(result.output), result
    beta = built.run("exec:beta", "--", "sh", "-c", 'echo "top=$TOP foo=$FOO"')
    assert "top=shared foo=" in lines(beta.output), beta


# -- shells -------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["sh", "root_sh"])
def test_shell_runs_commands_from_stdin(docker_client: docker.DockerClient, built: Project, task: str) -> None:
    result = run_doit_input(built, f"{task}:alpha", input="id -u; echo hi-$((1+1)); cat /name\n")
    assert_ok(result)
    out = lines(result.output)
    assert {"0", "hi-2", "alpha"} <= set(out), result
    failed = run_doit_input(built, f"{task}:alpha", input="exit 3\n")
    assert_clean_failure(failed, f"{task}:alpha: the shell exited with 3")
    assert containers_of(docker_client, built.ns) == []


def test_dev_mounts_are_writable_and_the_container_is_kept(docker_client: docker.DockerClient,
                                                          built: Project) -> None:
    assert not built.path("alpha/env-frozen").exists()
    script = (
        "echo made > /opt/environments/from-dev\n"
        "mkdir -p /opt/env-frozen/x && echo pinned > /opt/env-frozen/x/requirements.txt\n"
        "echo '#!/bin/sh' > /opt/common-scripts/from-dev.sh\n"
        "ls /opt/common-scripts\n"
    )
    result = run_doit_input(built, "dev:alpha", input=script)
    assert_ok(result)
    assert built.read("alpha/environments/from-dev") == "made\n"
    assert built.read("alpha/env-frozen/x/requirements.txt") == "pinned\n"
    assert built.path("common/scripts/from-dev.sh").is_file()
    assert "hello.sh" in lines(result.output), result
    match = re.search(r"docker rm -f (pipeline-dev-alpha-\S+)", result.output)
    assert match, result
    container = docker_client.containers.get(match.group(1))
    try:
        assert container.status == "exited"
        assert container.labels.get("pipeline.namespace") == built.ns
    finally:
        container.remove(force=True)


# -- files out of the image ---------------------------------------------------------------------

def test_cp_file_and_directory(built: Project, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(built.run("cp:alpha", "--", "/name", str(out)))
    assert (out / "name").read_text() == "alpha\n"
    assert_ok(built.run("cp:alpha", "--", "/name", str(tmp_path / "new" / "renamed.txt")))
    assert (tmp_path / "new" / "renamed.txt").read_text() == "alpha\n"

    assert_ok(built.run("cp:alpha", "--", "/opt/environments", str(tmp_path / "envs")))
    test_script = tmp_path / "envs" / "test"
    assert test_script.read_text() == built.read("alpha/environments/test")
    assert test_script.stat().st_mode & 0o111
    assert_ok(built.run("cp:alpha", "--", "/opt/environments", str(out)))  # existing dir: goes inside
    assert (out / "environments" / "test").is_file()
    assert not list(tmp_path.rglob(".pipeline-cp-*")), "temporary folders left behind"

    missing = built.run("cp:alpha", "--", "/nope", str(tmp_path / "x"))
    assert_clean_failure(missing, "cp:alpha", "/nope is not in image", built.mission_tag("alpha"))
    assert not (tmp_path / "x").exists()
    assert_clean_failure(built.run("cp:alpha", "--", "/name"), "give a path in the image and a host path")


def test_env_list_and_env_export(project: Project, tmp_path: Path) -> None:
    project.write("alpha/Dockerfile.custom", custom_dockerfile(
        "alpha",
        "RUN mkdir -p /opt/env-frozen/main /opt/env-frozen/extra /opt/env-frozen/empty"
        " && echo 'six==1.16.0' > /opt/env-frozen/main/requirements.txt"
        " && echo 'idna==3.7' > /opt/env-frozen/extra/requirements.txt",
    ))
    build_all(project)

    listed = project.run("env_list:alpha")
    assert_ok(listed)
    out = lines(listed.output)
    assert out.index("extra") < out.index("main"), listed
    assert "empty" not in out, listed
    assert "no environments in" in project.run("env_list:beta").output

    exported = project.run("env_export:alpha", "--", "main")
    assert_ok(exported)
    assert "six==1.16.0" in lines(exported.output)
    target = tmp_path / "spec" / "main.txt"
    assert_ok(project.run("env_export:alpha", "--output", str(target), "extra"))
    assert target.read_text() == "idna==3.7\n"

    unknown = project.run("env_export:alpha", "--", "nope")
    assert_clean_failure(unknown, "environment 'nope' is not in image", "available: extra, main")
    assert_clean_failure(project.run("env_export:alpha"), "give one environment")


# -- run_lab ------------------------------------------------------------------------------------

def http_get(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # nosec B310 - http://127.0.0.1 only
                return answer.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_run_lab_publishes_the_image_cmd_and_stops_on_ctrl_c(docker_client: docker.DockerClient,
                                                             project: Project) -> None:
    # busybox has no JupyterLab: the image's default CMD stands in for it on the lab port.
    project.write("alpha/Dockerfile.custom", custom_dockerfile(
        "alpha", "RUN mkdir -p /www && echo lab-ok > /www/index.html",
        'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]',
    ))
    build_all(project)
    port = free_port()
    with project.start("run_lab:alpha", "--port", str(port)) as run:
        try:
            assert http_get(f"http://127.0.0.1:{port}/", time.monotonic() + 60) == "lab-ok\n"
        except OSError:
            raise AssertionError(f"no answer on port {port}:\n{run.output()}") from None
        assert containers_of(docker_client, project.ns), "no lab container is running"
        run.signal_group(signal.SIGINT)
        stopped = time.monotonic()
        result = run.wait(timeout=60)
    assert_ok(result)
    assert f"http://127.0.0.1:{port}/lab" in result.output, result
    assert "stopped; container removed" in result.output, result
    assert time.monotonic() - stopped < 8, "Ctrl-C took too long"
    assert containers_of(docker_client, project.ns) == []


def test_run_lab_port_taken_is_a_clean_failure(project: Project) -> None:
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", 'CMD ["sleep", "30"]'))
    build_all(project)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = project.run("run_lab:alpha", "--port", str(port), timeout=60)
    assert_clean_failure(result, "run_lab:alpha: JupyterLab in", "exited with 125")

"""Patching: patch, patch_os (script shipped), patch_ssl, patch_history, against a real dockerd."""
from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    assert_no_containers,
    assert_ok,
    image_id,
    run_in_image,
)

pytestmark = pytest.mark.docker

CONFIG_KEYS = ("User", "Cmd", "Entrypoint", "WorkingDir", "Env", "ExposedPorts", "Volumes", "StopSignal")


@pytest.fixture
def alpha(project: Project) -> Project:
    """The fixture project with only alpha built (busybox: /bin/sh, no python3)."""
    assert_ok(project.run("deployment=alpha"))
    return project


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def patch(project: Project, script_path: Path, author: str = "tester@example.org", description: str = "a patch",
          *extra: str):
    return project.run("deployment=alpha", "patch:alpha", "--script", str(script_path), "--author", author,
                       "--description", description, *extra)


def config(client: docker.DockerClient, ref: str) -> dict:
    return client.api.inspect_image(ref)["Config"]


def test_patch_commits_keeps_config_and_records_history(docker_client: docker.DockerClient, alpha: Project,
                                                        tmp_path: Path) -> None:
    ref = alpha.mission_tag("alpha")
    before = image_id(docker_client, ref)
    assert before
    s = script(tmp_path, "fix.sh", 'echo "patching in $(pwd) as $(id -u)"\necho fixed > /fixed\n')
    result = patch(alpha, s)
    assert_ok(result)
    assert "patching in /opt/patches/" in result.output and "as 0" in result.output  # streamed live
    after = image_id(docker_client, ref)
    assert after and after != before
    short = before.split(":")[1][:12]
    repo = ref.rsplit(":", 1)[0]
    assert image_id(docker_client, f"{repo}:pre-patch-{short}") == before
    out = run_in_image(docker_client, ref, f"cat /fixed; ls /opt/patches/{short}; cat /opt/patches/{short}/patch.log")
    assert out.splitlines()[0] == "fixed"
    assert {"metadata.yaml", "source-inspect.json", "fix.sh", "patch.log"} <= set(out.split())
    assert f"patching in /opt/patches/{short} as 0" in out
    old, new = config(docker_client, before), config(docker_client, after)
    for key in CONFIG_KEYS:
        assert old.get(key) == new.get(key) or (key == "Entrypoint" and not old.get(key) and not new.get(key)), key
    label = json.loads(new["Labels"]["pipeline.patch"])
    assert label["author"] == "tester@example.org" and label["source"] == before
    assert {k: v for k, v in new["Labels"].items() if k != "pipeline.patch"} == old["Labels"]
    assert "patch:alpha.log" in {p.name for p in (alpha.root / "build" / "logs").iterdir()}
    assert_no_containers(docker_client, alpha.ns)


def test_patch_output_keeps_stdout_and_stderr_in_order(alpha: Project, tmp_path: Path) -> None:
    body = "".join(f"echo out-{i}\necho err-{i} >&2\n" for i in range(40))
    result = patch(alpha, script(tmp_path, "noisy.sh", body))
    assert_ok(result)
    expected = [f"{kind}-{i}" for i in range(40) for kind in ("out", "err")]
    seen = [line.strip() for line in result.output.splitlines() if line.strip().startswith(("out-", "err-"))]
    assert seen == expected, result.output
    logged = [line.rsplit(": ", 1)[-1] for line in alpha.build_log("patch:alpha").read_text().splitlines()
              if line.rsplit(": ", 1)[-1].startswith(("out-", "err-"))]
    assert logged == expected
    assert alpha.build_log("patch:alpha").read_text().count("out-0") == 1


def test_patches_stack_and_history_lists_them_in_order(docker_client: docker.DockerClient, alpha: Project,
                                                       tmp_path: Path) -> None:
    ref = alpha.mission_tag("alpha")
    first_source = image_id(docker_client, ref)
    assert_ok(patch(alpha, script(tmp_path, "one.sh", "echo one > /one\n"), "ann", "first patch"))
    second_source = image_id(docker_client, ref)
    assert_ok(patch(alpha, script(tmp_path, "two.sh", "echo two > /two\n"), "bob", "second patch"))
    out = run_in_image(docker_client, ref, "cat /one /two; ls /opt/patches")
    dirs = {first_source.split(":")[1][:12], second_source.split(":")[1][:12]}
    assert out.split()[:2] == ["one", "two"] and set(out.split()[2:]) == dirs
    history = alpha.run("deployment=alpha", "patch_history:alpha")
    assert_ok(history)
    lines = [line for line in history.output.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(lines) == 2 and "first patch" in lines[0] and "second patch" in lines[1], history
    assert first_source.split(":")[1][:12] in lines[0]


def test_failing_script_leaves_no_image_and_keeps_the_tag(docker_client: docker.DockerClient, alpha: Project,
                                                          tmp_path: Path) -> None:
    ref = alpha.mission_tag("alpha")
    before = image_id(docker_client, ref)
    def ours():
        return {i["Id"] for i in docker_client.api.images(all=True, filters={"label": f"pipeline.namespace={alpha.ns}"})}
    images_before = ours()
    result = patch(alpha, script(tmp_path, "bad.sh", "echo about to fail\necho the-last-words >&2\nexit 3\n"))
    assert_clean_failure(result, "patch:alpha", "exited with 3", "the-last-words", "unchanged")
    assert image_id(docker_client, ref) == before
    assert ours() == images_before, "a committed image was left behind"
    assert not [t for t in (docker_client.images.get(before).tags) if "pre-patch" in t]
    assert "the-last-words" in alpha.build_log("patch:alpha").read_text()
    assert_no_containers(docker_client, alpha.ns)


def test_patch_needs_author_and_script(alpha: Project, tmp_path: Path) -> None:
    assert_clean_failure(alpha.run("deployment=alpha", "patch:alpha", "--author", "x", "--description", "y"),
                         "--script")
    assert_clean_failure(patch(alpha, tmp_path / "missing.sh"), "missing.sh", "--script")
    assert_clean_failure(patch(alpha, script(tmp_path, "ok.sh", "true\n"), " "), "--author")


def test_patch_ssl_appends_without_update_ca_certificates(docker_client: docker.DockerClient,
                                                          alpha: Project) -> None:
    result = alpha.run("deployment=alpha", "patch_ssl:alpha", "--author", "sec")
    assert_ok(result)
    out = run_in_image(docker_client, alpha.mission_tag("alpha"), "cat /etc/ssl/certs/ca-certificates.crt")
    assert out.count("BEGIN CERTIFICATE") == alpha.read("ca/bundle.pem").count("BEGIN CERTIFICATE") >= 1


def test_patch_os_runs_the_shipped_script(docker_client: docker.DockerClient, alpha: Project) -> None:
    # busybox has no bash/apt-get: the shipped script is copied in and fails cleanly, nothing tagged
    ref = alpha.mission_tag("alpha")
    before = image_id(docker_client, ref)
    result = alpha.run("deployment=alpha", "patch_os:alpha", "--author", "ops")
    assert_clean_failure(result, "apt-upgrade", "unchanged")
    assert image_id(docker_client, ref) == before
    assert_no_containers(docker_client, alpha.ns)

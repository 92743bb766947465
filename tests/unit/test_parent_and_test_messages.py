"""The parent check names file:line, what FROM resolved to and what to set; test failures name the real cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.parents import check_parents
from pipeline.run import CommandResult
from pipeline.settings import Deployment, Registry
from pipeline.stages.testing import _failure

PIPELINE = """\
namespace: unit
root: {rootfs: root.tar}
chain:
  - {name: stack, dockerfile: stack/Dockerfile, context: stack, base_arg: BASE_CONTAINER}
registry: {kind: generic, host: 127.0.0.1:5000}
"""


def settings_with(tmp_path: Path, dockerfile: str, base_arg: str | None) -> config.Settings:
    base = tmp_path / "deployments"
    (base / "stack").mkdir(parents=True)
    (base / "root.tar").write_bytes(b"")
    text = PIPELINE if base_arg else PIPELINE.replace(", base_arg: BASE_CONTAINER", "")
    (base / "pipeline.yaml").write_text(text.replace("BASE_CONTAINER", base_arg or "BASE_CONTAINER"))
    (base / "stack" / "Dockerfile").write_text(dockerfile)
    return config.load(base)


@pytest.mark.parametrize(
    ("dockerfile", "base_arg", "expected"),
    [
        ("ARG BASE_CONTAINER=ubuntu:jammy\nFROM $BASE_CONTAINER\n", "BASE_CONTAINER", None),
        ("ARG ROOT_CONTAINER\nFROM ${ROOT_CONTAINER}\n", "ROOT_CONTAINER", None),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", None, None),
        ("FROM busybox AS tools\nARG BASE_CONTAINER\nFROM tools AS x\nARG BASE_CONTAINER\n", "BASE_CONTAINER",
         "stack/Dockerfile:1: the final stage's `FROM busybox` resolves to 'busybox', not the parent"),
        ("ARG BASE_CONTAINER=ubuntu:jammy\nFROM $BASE_CONTAINER\n", None,
         "stack/Dockerfile:2: the final stage's `FROM $BASE_CONTAINER` resolves to 'ubuntu:jammy', not the parent "
         "unit/root:latest that the pipeline passes as BASE_IMAGE; set `base_arg: BASE_CONTAINER` on chain[0] "
         "(name: stack) in "),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}-slim\n", None,
         "stack/Dockerfile:2: the final stage's `FROM ${BASE_IMAGE}-slim` resolves to the parent's ID with another "
         "suffix, not the parent unit/root:latest that the pipeline passes as BASE_IMAGE; start it with `ARG "
         "BASE_IMAGE` and `FROM ${BASE_IMAGE}`"),
        ("FROM $OTHER\n", "BASE_CONTAINER",
         "stack/Dockerfile:1: the final stage's `FROM $OTHER` resolves to '', not the parent unit/root:latest that "
         "the pipeline passes as BASE_CONTAINER; set `base_arg: OTHER` on chain[0]"),
    ],
    ids=["docker-stacks", "seed-certs", "plain", "multi-stage-literal", "arg-default", "suffix", "undeclared"],
)
def test_the_final_from_must_resolve_to_the_parent(tmp_path: Path, dockerfile: str, base_arg: str | None,
                                                   expected: str | None) -> None:
    settings = settings_with(tmp_path, dockerfile, base_arg)
    if expected is None:
        check_parents(settings)
        return
    with pytest.raises(ConfigError) as info:
        check_parents(settings)
    assert expected in str(info.value)


def _dep(tmp_path: Path, test: str) -> Deployment:
    return Deployment(name="m1", folder=tmp_path, repo="m1", dockerfile=tmp_path / "Dockerfile", trailer=False,
                      build_args={}, test=test, freeze="/opt/env-frozen", registry=Registry("generic", "h"))


RUNC = "docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create " \
       "failed: unable to start container process: "


@pytest.mark.parametrize(
    ("test", "code", "output", "expected", "absent"),
    [
        ("/opt/environments/test", 127,
         RUNC + 'exec: "tini": executable file not found in $PATH: unknown.\n',
         "the container could not start 'tini', which runs before the test command /opt/environments/test (the "
         "image's ENTRYPOINT), in REF: exec: \"tini\": executable file not found in $PATH; install it",
         "/opt/environments/test not found"),
        ("/nope", 127, RUNC + 'exec: "/nope": stat /nope: no such file or directory: unknown.\n',
         "test command /nope not found in image REF (stat /nope: no such file or directory); set `test:` in", None),
        ("/opt/t --fast", 126, RUNC + 'exec: "/opt/t": permission denied: unknown.\n',
         "test command /opt/t --fast not executable in image REF (permission denied)", None),
        ("/opt/t", 127, "running\nsh: pytest: not found\n",
         "/opt/t exited with 127 in REF; last output: running | sh: pytest: not found", "test command"),
        ("/opt/t", 127, "docker: Error response from daemon: something else.\n",
         "docker could not start /opt/t in REF (exit 127): docker: Error response from daemon: something else.",
         "not found in image"),
    ],
    ids=["missing-entrypoint", "missing-test", "not-executable", "missing-inside-the-test", "unparsed"],
)
def test_a_failed_test_names_the_real_cause(tmp_path: Path, test: str, code: int, output: str, expected: str,
                                            absent: str | None) -> None:
    message = _failure(_dep(tmp_path, test), "REF", CommandResult(("docker", "run"), code, output))
    assert expected in message
    if absent:
        assert absent not in message

"""freeze:DEPLOYMENT writes the image's pinned specs into deployments/NAME/env-frozen/, with what changed;
plain doit only reports that drift (drift:DEPLOYMENT) and writes nothing."""
from __future__ import annotations

import docker
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    assert_no_containers,
    assert_nothing_ran,
    assert_ok,
    custom_dockerfile,
    run_in_image,
)

pytestmark = pytest.mark.docker

IMAGE_MAIN = "foo==1.1\nbar==2.0\nnewpkg==0.1\n"
IMAGE_EXTRA = "x==1\n"
COMMITTED_MAIN = "# committed pins\nfoo==1.0\nBar==2.0\noldpkg==3\n"


def _printf(text: str, path: str) -> str:
    escaped = text.replace("\n", "\\n")
    return f"printf '{escaped}' > {path}"


WRITE_PINS = (
    "RUN mkdir -p /opt/env-frozen/main /opt/env-frozen/extra"
    f" && {_printf(IMAGE_MAIN, '/opt/env-frozen/main/requirements.txt')}"
    f" && {_printf(IMAGE_EXTRA, '/opt/env-frozen/extra/requirements.txt')}"
)


@pytest.fixture
def pinned(project: Project) -> Project:
    """alpha's image writes pins that differ from the committed ones; beta has no freeze directory."""
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", WRITE_PINS))
    project.write("alpha/env-frozen/main/requirements.txt", COMMITTED_MAIN)
    project.write("alpha/env-frozen/gone/requirements.txt", "y==1\n")
    return project


def _drift_lines_are_reported(out: str, result: object) -> None:
    assert "main: 1 added, 1 removed, 1 changed" in out, result
    for line in ("+ newpkg 0.1", "- oldpkg 3", "~ foo 1.0 -> 1.1"):
        assert line in out, (line, result)
    diff_lines = [line.strip() for line in out.splitlines() if line.strip()[:2] in ("+ ", "- ", "~ ")]
    assert not [line for line in diff_lines if "bar" in line.lower()], "an unchanged pin was reported"
    assert "extra: new environment (1 packages)" in out, result
    assert "gone: environment removed" in out, result


def test_plain_doit_reports_drift_and_writes_nothing(pinned: Project) -> None:
    before = {p: p.read_bytes() for p in pinned.path("alpha/env-frozen").rglob("*") if p.is_file()}
    result = pinned.run("deployment=alpha")
    assert_ok(result)
    assert {"build:alpha", "drift:alpha"} <= result.ran and "freeze:alpha" not in result.ran, result
    _drift_lines_are_reported(result.output, result)
    assert "`doit freeze:alpha` writes them" in result.output, result
    after = {p: p.read_bytes() for p in pinned.path("alpha/env-frozen").rglob("*") if p.is_file()}
    assert after == before, "plain doit wrote into env-frozen/"
    again = pinned.run("deployment=alpha")
    assert_nothing_ran(again)
    assert "drift:alpha" in again.uptodate, again


def test_freeze_copies_pins_and_prints_changes(docker_client: docker.DockerClient, pinned: Project) -> None:
    result = pinned.run("deployment=alpha", "freeze:alpha")
    assert_ok(result)
    assert {"build:alpha", "freeze:alpha"} <= result.ran, result
    assert run_in_image(docker_client, pinned.mission_tag("alpha"), "cat /opt/env-frozen/main/requirements.txt") \
        == IMAGE_MAIN
    out = result.output
    _drift_lines_are_reported(out, result)
    assert "commit the new pins" in out, result
    assert pinned.read("alpha/env-frozen/main/requirements.txt") == IMAGE_MAIN
    assert pinned.read("alpha/env-frozen/extra/requirements.txt") == IMAGE_EXTRA
    assert not pinned.path("alpha/env-frozen/gone").exists()
    assert (pinned.root / "build" / "freeze" / "alpha.json").is_file()
    assert_no_containers(docker_client, pinned.ns)

    again = pinned.run("deployment=alpha", "freeze:alpha")
    assert_nothing_ran(again)
    assert "freeze:alpha" in again.uptodate, again


def test_edited_specs_are_restored_and_unchanged_files_not_rewritten(pinned: Project) -> None:
    assert_ok(pinned.run("deployment=alpha", "freeze:alpha"))
    extra = pinned.path("alpha/env-frozen/extra/requirements.txt")
    mtime = extra.stat().st_mtime_ns
    pinned.write("alpha/env-frozen/main/requirements.txt", "foo==0.9\n")
    info = pinned.info("freeze:alpha", "deployment=alpha")
    assert "main/requirements.txt" in info.output and "changed since the last freeze" in info.output, info
    result = pinned.run("deployment=alpha", "freeze:alpha")
    assert_ok(result)
    assert "~ foo 0.9 -> 1.1" in result.output, result
    assert pinned.read("alpha/env-frozen/main/requirements.txt") == IMAGE_MAIN
    assert extra.stat().st_mtime_ns == mtime, "an unchanged spec was rewritten"


def test_frozen_mode_never_writes(pinned: Project) -> None:
    result = pinned.run("deployment=alpha", "frozen=1")
    assert_ok(result)
    assert "drift:alpha" in result.uptodate, result
    assert "freeze:alpha" in pinned.run("deployment=alpha", "frozen=1", "freeze:alpha").uptodate
    assert pinned.read("alpha/env-frozen/main/requirements.txt") == COMMITTED_MAIN
    forced = pinned.run("--always-execute", "deployment=alpha", "frozen=1", "freeze:alpha")
    assert_ok(forced)
    assert "frozen mode: keeping the committed specs" in forced.output, forced
    assert pinned.read("alpha/env-frozen/main/requirements.txt") == COMMITTED_MAIN
    assert pinned.path("alpha/env-frozen/gone/requirements.txt").is_file()


def test_no_freeze_directory_and_no_committed_specs_is_fine(built: Project) -> None:
    # the plain fixture images have no /opt/env-frozen, and the deployments no env-frozen/
    assert not built.path("beta/env-frozen").exists()
    assert_nothing_ran(built.run())


def test_missing_freeze_directory_with_committed_specs(built: Project) -> None:
    built.write("beta/env-frozen/main/requirements.txt", "a==1\n")
    result = built.run("freeze:beta")
    assert_clean_failure(result, "freeze:beta", "/opt/env-frozen", "key 'freeze'", "deployment.yaml",
                         built.mission_tag("beta"))
    assert built.read("beta/env-frozen/main/requirements.txt") == "a==1\n"

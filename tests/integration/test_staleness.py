"""Incremental rebuilds: which image stages run after which change, and what
``doit info`` says about why a stage is stale."""
from __future__ import annotations

import docker
import pytest
from helpers import (
    IMAGE_STAGES,
    Project,
    assert_image_stages,
    assert_nothing_ran,
    assert_reason,
    build_all,
    fake_pem,
    image_id,
    line_with,
    run_in_image,
)

pytestmark = pytest.mark.docker

COMMON_AND_BUILDS = {"chain:common", "build:alpha", "build:beta"}


def test_second_run_runs_nothing(built: Project) -> None:
    result = built.run()
    assert_nothing_ran(result)
    assert IMAGE_STAGES <= result.uptodate, result


def test_custom_dockerfile_edit_rebuilds_only_its_mission(built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo alpha-v2 > /v2\n")
    result = built.run()
    assert_image_stages(result, {"build:alpha"})
    # the stages that look into the image (test, drift, manifest) follow it; beta's stay current
    assert result.ran == {"dockerfile:alpha", "build:alpha", "test:alpha", "drift:alpha", "manifest:alpha"}, result


def test_environment_file_copied_by_trailer_rebuilds_only_its_mission(built: Project) -> None:
    built.append("alpha/environments/test", "echo extra check\n")
    assert_image_stages(built.run(), {"build:alpha"})


def test_common_dockerfile_edit_rebuilds_common_and_missions(built: Project) -> None:
    built.append("common/Dockerfile", "RUN echo common-v2 > /common-v2\n")
    assert_image_stages(built.run(), COMMON_AND_BUILDS)


def test_copied_script_edit_rebuilds_common_and_missions(built: Project) -> None:
    built.append("common/scripts/hello.sh", "echo hello again\n")
    assert_reason(built.info("chain:common"), "hello.sh", "changed")
    assert_image_stages(built.run(), COMMON_AND_BUILDS)


@pytest.mark.parametrize("rel", ["common/scripts/unused.sh", "common/README.txt"])
def test_context_file_no_layer_copies_rebuilds_nothing(built: Project, rel: str) -> None:
    built.append(rel, "# edited\n")
    assert_nothing_ran(built.run())


def test_ca_bundle_change_rebuilds_from_certs_down(built: Project) -> None:
    built.write("ca/bundle.pem", fake_pem("QW5vdGhlckZha2VDZXJ0aWZpY2F0ZUJvZHlGb3JUaGVUZXN0U3VpdGVPbmx5"))
    result = built.run()
    assert_image_stages(result, IMAGE_STAGES - {"root"})
    assert "certs" in result.ran, result


def test_lost_doit_state_rebuilds_no_image(built: Project) -> None:
    db_files = built.doit_db_files()
    assert db_files, f"no .doit.db* in {built.root}"
    for path in db_files:
        path.unlink()
    assert_image_stages(built.run(), set())


def test_removed_image_is_rebuilt_with_its_descendants(docker_client: docker.DockerClient, built: Project) -> None:
    old_id = image_id(docker_client, built.local_image("common"))
    docker_client.images.remove(built.local_image("common"), force=True)
    assert image_id(docker_client, built.local_image("common")) is None
    assert_reason(built.info("chain:common"), "missing")
    result = built.run()
    new_id = image_id(docker_client, built.local_image("common"))
    assert new_id
    # The spec expects both builds to rerun. The untagged image survives as the
    # missions' parent, so Docker's layer cache may recreate the very same ID;
    # then the missions' inputs are unchanged and skipping them is also correct.
    expected = COMMON_AND_BUILDS if new_id != old_id else {"chain:common"}
    assert_image_stages(result, expected)


def test_info_names_the_changed_dockerfile(built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo alpha-v2 > /v2\n")
    info = built.info("build:alpha")
    assert_reason(info, "Dockerfile", "changed")
    assert not line_with(info.output, "parent changed"), info


def test_info_reports_parent_changed(built: Project) -> None:
    built.append("common/Dockerfile.certs", "RUN echo certs-v2 > /certs-v2\n")
    assert_image_stages(built.run("chain:certs"), {"chain:certs"})
    assert_reason(built.info("chain:common"), "parent changed")
    assert_image_stages(built.run("chain:common"), {"chain:common"})
    assert_reason(built.info("build:alpha"), "parent changed")
    assert_image_stages(built.run(), {"build:alpha", "build:beta"})


def test_dockerignored_file_edit_rebuilds_nothing(project: Project) -> None:
    project.write("alpha/.dockerignore", "environments/notes.txt\n")
    project.write("alpha/environments/notes.txt", "scratch notes\n")
    build_all(project)
    project.append("alpha/environments/notes.txt", "more notes\n")
    assert_image_stages(project.run(), set())


def test_build_arg_change_rebuilds_only_its_mission(docker_client: docker.DockerClient, project: Project) -> None:
    project.update_yaml("alpha/deployment.yaml", lambda d: d.update(build_args={"FOO": "1"}))
    project.append("alpha/Dockerfile.custom", "ARG FOO\nRUN echo $FOO > /foo\n")
    build_all(project)
    project.update_yaml("alpha/deployment.yaml", lambda d: d.update(build_args={"FOO": "2"}))
    assert_reason(project.info("build:alpha"), "FOO")
    assert_image_stages(project.run(), {"build:alpha"})
    assert run_in_image(docker_client, project.mission_tag("alpha"), "cat /foo") == "2\n"

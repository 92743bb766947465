"""Full builds: what a first run produces, deployment selection, root from an image."""
from __future__ import annotations

from pathlib import Path

import docker
import pytest
from helpers import (
    DEPLOYMENTS,
    Project,
    assert_image_stages,
    assert_nothing_ran,
    build_all,
    image_id,
    import_rootfs,
    labels_of,
    run_in_image,
)

pytestmark = pytest.mark.docker


def expected_images(project: Project) -> dict[str, str]:
    """image reference -> pipeline.stage label."""
    images = {project.local_image("root"): "root",
              project.local_image("certs"): "chain:certs",
              project.local_image("common"): "chain:common"}
    images.update({project.mission_tag(d): f"build:{d}" for d in DEPLOYMENTS})
    return images


def test_first_run_builds_everything(docker_client: docker.DockerClient, project: Project) -> None:
    result = build_all(project)
    assert {"certs", *(f"dockerfile:{d}" for d in DEPLOYMENTS)} <= result.ran, result
    for ref, stage in expected_images(project).items():
        labels = labels_of(docker_client, ref)
        assert labels.get("pipeline.stage") == stage, (ref, labels)
        assert labels.get("pipeline.namespace") == project.ns, (ref, labels)
        assert labels.get("pipeline.inputs"), (ref, labels)
        deployment = stage.removeprefix("build:") if stage.startswith("build:") else None
        assert labels.get("pipeline.deployment") == deployment, (ref, labels)
    log = project.build_log("build:alpha")
    assert log.is_file() and log.stat().st_size > 0


def test_mission_images_contain_every_layer(docker_client: docker.DockerClient, built: Project) -> None:
    pem_lines = built.read("ca/bundle.pem").count("\n")
    for dep in DEPLOYMENTS:
        out = run_in_image(docker_client, built.mission_tag(dep),
                           "/opt/environments/test && /opt/common-scripts/hello.sh && wc -l < /etc/ssl/bundle.pem")
        assert out.split("\n")[:3] == [f"{dep} ok", "hello from common", str(pem_lines)]


def test_inputs_keys_differ_per_stage(docker_client: docker.DockerClient, built: Project) -> None:
    keys = [labels_of(docker_client, ref)["pipeline.inputs"] for ref in expected_images(built)]
    assert len(set(keys)) == len(keys), keys


def test_deployment_selection_builds_only_that_deployment(docker_client: docker.DockerClient,
                                                          project: Project) -> None:
    result = project.run("deployment=alpha")
    assert_image_stages(result, {"root", "chain:certs", "chain:common", "build:alpha"})
    assert not {"build:beta", "dockerfile:beta"} & (result.ran | result.uptodate), result
    assert image_id(docker_client, project.mission_tag("alpha"))
    assert image_id(docker_client, project.mission_tag("beta")) is None
    # beta joins later without rebuilding the shared layers
    assert_image_stages(project.run(), {"build:beta"})


def test_root_from_local_image(docker_client: docker.DockerClient, project: Project, rootfs_tar: Path) -> None:
    base = f"{project.ns}/base:src"
    import_rootfs(docker_client, rootfs_tar, f"{project.ns}/base", "src")
    project.update_yaml("pipeline.yaml", lambda c: c.update(root={"image": base}))
    build_all(project)
    assert labels_of(docker_client, project.local_image("root")).get("pipeline.stage") == "root"
    assert run_in_image(docker_client, project.mission_tag("alpha"), "cat /name") == "alpha\n"
    assert_nothing_ran(project.run())



def test_buildkit_mode_adds_cache_mounts_and_stays_incremental(
    docker_client: docker.DockerClient, project: Project
) -> None:
    project.update_yaml("pipeline.yaml", lambda c: c.update(builder={"buildkit": True}))
    first = build_all(project)
    assert first.rc == 0, first.output[-3000:]
    rendered = (project.root / "build" / "dockerfiles" / "alpha.Dockerfile").read_text()
    assert "RUN --mount=type=cache,target=/root/.cache/pip" in rendered
    assert run_in_image(docker_client, project.mission_tag("alpha"), "cat /name").strip() == "alpha"
    assert_nothing_ran(project.run())

    # Switching the builder changes the rendered Dockerfiles, so the layers that RUN rebuild.
    project.update_yaml("pipeline.yaml", lambda c: c.update(builder={"buildkit": False}))
    info = project.info("build:alpha")
    assert "rendered Dockerfile changed" in info.output or "parent changed" in info.output, info.output
    again = project.run()
    assert again.rc == 0, again.output[-3000:]
    assert {"chain:common", "build:alpha", "build:beta"} <= again.image_stages
    assert "root" not in again.image_stages

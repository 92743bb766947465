"""Self-checks of the suite's own machinery; these need Docker but not the pipeline."""
from __future__ import annotations

from pathlib import Path

import docker
import pytest
import yaml
from helpers import (
    DEPLOYMENTS,
    Project,
    RunResult,
    cleanup_namespace,
    import_rootfs,
    namespace_images,
    parse_output,
    run_in_image,
)

pytestmark = pytest.mark.docker


def test_rootfs_imports_and_runs_a_shell(docker_client: docker.DockerClient, rootfs_tar: Path, namespace: str) -> None:
    image = import_rootfs(docker_client, rootfs_tar, f"{namespace}/base", "src")
    assert run_in_image(docker_client, image.id, "echo ok") == "ok\n"
    out = run_in_image(docker_client, image.id, "mkdir -p /tmp/x && echo hi > /tmp/x/f && chmod +x /tmp/x/f "
                                                "&& test -x /tmp/x/f && cat /tmp/x/f && id -u && env | grep -c PATH")
    assert out.split() == ["hi", "0", "1"]


def test_project_factory_layout(project: Project) -> None:
    config = yaml.safe_load(project.read("pipeline.yaml"))
    assert config["namespace"] == project.ns
    assert Path(config["root"]["rootfs"]).is_file()
    for rel in (config["certs"]["source"], config["trailer"], *(c["dockerfile"] for c in config["chain"])):
        assert project.path(rel).is_file(), rel
    for dep in DEPLOYMENTS:
        assert yaml.safe_load(project.read(f"{dep}/deployment.yaml")) == {
            "repo": f"{project.ns}-{dep}", "test": "/opt/environments/test"}
        assert project.path(f"{dep}/environments/test").stat().st_mode & 0o111
    assert project.path("common/scripts/unused.sh").is_file()
    assert project.path("common/README.txt").is_file()


def test_fixture_dockerfiles_build_by_hand(docker_client: docker.DockerClient, project: Project) -> None:
    """What the pipeline is expected to do, done with the SDK: proves the fixture
    Dockerfiles, contexts and test script are valid for the busybox base."""
    labels = {"pipeline.namespace": project.ns}
    parent = import_rootfs(docker_client, project.rootfs, f"{project.ns}/root", "latest").id
    project.write("common/tls-ca-bundle.pem", project.read("ca/bundle.pem"))  # the certs stage's job
    for dockerfile in ("common/Dockerfile.certs", "common/Dockerfile"):
        image, _ = docker_client.images.build(path=str(project.path("common")), dockerfile=str(project.path(dockerfile)),
                                              buildargs={"BASE_IMAGE": parent}, labels=labels, rm=True)
        parent = image.id
    mission = project.root / "alpha.Dockerfile"
    mission.write_text(project.read("alpha/Dockerfile.custom") + project.read("common/Dockerfile.trailer"))
    image, _ = docker_client.images.build(path=str(project.path("alpha")), dockerfile=str(mission),
                                          buildargs={"BASE_IMAGE": parent}, labels=labels, rm=True)
    out = run_in_image(docker_client, image.id, "/opt/environments/test && /opt/common-scripts/hello.sh "
                                                "&& grep -c CERTIFICATE /etc/ssl/bundle.pem")
    assert out.split("\n")[:3] == ["alpha ok", "hello from common", "2"]


def test_cleanup_removes_untagged_and_tagged(docker_client: docker.DockerClient, rootfs_tar: Path,
                                              namespace: str, tmp_path: Path) -> None:
    base = import_rootfs(docker_client, rootfs_tar, f"{namespace}/base", "src")
    (tmp_path / "Dockerfile").write_text(f"FROM {base.id}\nRUN echo x > /x\nRUN echo y > /y\n")
    docker_client.images.build(path=str(tmp_path), labels={"pipeline.namespace": namespace}, rm=True)  # untagged
    docker_client.containers.create(base.id, ["true"], labels={"pipeline.namespace": namespace})
    assert len(namespace_images(docker_client, namespace)) >= 2
    assert cleanup_namespace(docker_client, namespace) == []
    assert namespace_images(docker_client, namespace) == []


def test_output_parsing() -> None:
    output = ".  certs\n-- root\n.  chain:certs\nsome build output\n.  build:alpha\n-- build:beta\n"
    ran, uptodate = parse_output(output)
    assert ran == {"certs", "chain:certs", "build:alpha"}
    assert uptodate == {"root", "build:beta"}
    assert RunResult.parse(0, output).image_stages == {"chain:certs", "build:alpha"}

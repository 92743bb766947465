"""Fixtures shared by the test suite (see helpers.py for the machinery)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from helpers import Project, build_all, build_busybox_rootfs, cleanup_namespace, make_project


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Docker daemon unreachable in CI (scripts/setup should have started it): {exc}")
        pytest.skip(f"Docker daemon unreachable: {exc}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs tarball, built once per session."""
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def namespace(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique image namespace; every image and container of it is removed afterwards."""
    ns = "pt" + uuid.uuid4().hex[:8]
    yield ns
    leftover = cleanup_namespace(docker_client, ns)
    assert not leftover, f"could not remove Docker objects of {ns}: {leftover}"


@pytest.fixture
def project(tmp_path: Path, namespace: str, rootfs_tar: Path) -> Project:
    return make_project(tmp_path, namespace, rootfs_tar)


@pytest.fixture
def built(project: Project) -> Project:
    """The fixture project after a successful first full build."""
    build_all(project)
    return project


# -- services for the registry tests (started and stopped by the tests; see services.py) --------
# -- a second Docker engine for the scaling tests (see engines.py) --------------------------------
from engines import engine_b  # noqa: E402,F401
from services import (  # noqa: E402,F401  (fixtures, found by pytest through this module)
    auth_registry,
    docker_config,
    moto,
    moto_server,
    nodelete_registry,
    readonly_registry,
    registry,
    registry_factory,
)

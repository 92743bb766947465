"""The no-op's shortcuts fail closed: once every key is recalled from its stat memo (no parse, no hashing)
and each image is looked up once, a change the memo must notice still reruns exactly what it should."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import docker
import pytest
from helpers import IMAGE_STAGES, Project, assert_image_stages, assert_nothing_ran, image_id

from pipeline.hashing import RACY_NS


def _settled(project: Project) -> None:
    """Wait out the racy window, then a no-op that records every stage's memo (and must run nothing)."""
    time.sleep(RACY_NS / 1e9 + 0.1)
    assert_nothing_ran(project.run())
    memo = json.loads((project.root / "build" / "cache" / "input-stats.json").read_text())
    assert {"chain:certs", "chain:common", "build:alpha", "build:beta"} <= set(memo["stages"])


def _retag_common_to_root(client: docker.DockerClient, project: Project) -> None:
    client.images.get(project.local_image("root")).tag(project.local_image("common"))


def _restore_mtime(project: Project) -> None:
    path = project.path("common/scripts/hello.sh")
    st = path.stat()
    path.write_text(path.read_text().replace("hello", "HELLO"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# Applied in order to one built project, each after a settled no-op.
CHANGES: list[tuple[str, Callable[[docker.DockerClient, Project], None], set[str]]] = [
    ("a new empty directory in a copied directory",
     lambda c, p: p.path("alpha/environments/empty").mkdir(), {"build:alpha"}),
    ("a new file in a copied directory",
     lambda c, p: p.write("beta/environments/extra.txt", "x\n"), {"build:beta"}),
    ("a file edited with its mtime restored",
     lambda c, p: _restore_mtime(p), {"chain:common", "build:alpha", "build:beta"}),
    ("a file's mode changed (the file of the row before)",
     lambda c, p: p.path("beta/environments/extra.txt").chmod(0o755), {"build:beta"}),
]


@pytest.mark.docker
def test_the_memo_notices_every_change(docker_client: docker.DockerClient, built: Project) -> None:
    for what, change, expected in CHANGES:
        _settled(built)
        change(docker_client, built)
        result = built.run()
        assert_image_stages(result, expected)
        assert result.ran, what


@pytest.mark.docker
def test_an_image_retagged_to_another_id_is_noticed(docker_client: docker.DockerClient, built: Project) -> None:
    _settled(built)
    old_id = image_id(docker_client, built.local_image("common"))
    _retag_common_to_root(docker_client, built)
    result = built.run()
    new_id = image_id(docker_client, built.local_image("common"))
    assert new_id != image_id(docker_client, built.local_image("root"))
    # Docker's layer cache may make the very same image again: then the missions' inputs are unchanged.
    expected = {"chain:common", "build:alpha", "build:beta"} if new_id != old_id else {"chain:common"}
    assert_image_stages(result, expected)


@pytest.mark.docker
def test_a_removed_image_and_a_lost_state_are_noticed(docker_client: docker.DockerClient, built: Project) -> None:
    _settled(built)
    for path in built.doit_db_files():
        path.unlink()
    assert_image_stages(built.run(), set())
    _settled(built)
    docker_client.images.remove(built.mission_tag("alpha"), force=True)
    assert image_id(docker_client, built.mission_tag("alpha")) is None
    assert_image_stages(built.run(), {"build:alpha"})
    assert IMAGE_STAGES  # (the fixture's whole chain was built once, above)

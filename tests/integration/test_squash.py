"""Crosslink, export/import and squash against a real dockerd.

The fixture image is built FROM jhub-demo/notebook:latest (Debian bookworm with python3), used
read-only as a base; everything built is tagged and labelled under the test's namespace.
"""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    assert_no_containers,
    assert_ok,
    image_id,
)

pytestmark = pytest.mark.docker

BASE = "jhub-demo/notebook:latest"
CONTENT = b"print('the same module')\n" * 40
MARKER = b"ORIGINAL-MARKER-CONTENT-0001"
CORRUPT = b"CORRUPTED-MARKER-CONTENT-001"
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts", "Volumes", "StopSignal")


@pytest.fixture
def base(docker_client: docker.DockerClient) -> str:
    try:
        docker_client.images.get(BASE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE} is absent (build the demo first: scripts/demo); it is the python3 base of these tests")
    return BASE


def _member(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, **kw: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
    for key, value in kw.items():
        setattr(info, key, value)
    return info, data


def dups_tar() -> bytes:
    members = [
        _member("opt/dups", type=tarfile.DIRTYPE, mode=0o755),
        _member("opt/dups/a.py", CONTENT),
        _member("opt/dups/b.py", CONTENT),
        _member("opt/dups/sub/c.py", CONTENT),
        _member("opt/dups/sub", type=tarfile.DIRTYPE, mode=0o755),
        _member("opt/dups/mode.py", CONTENT, mode=0o755),
        _member("opt/dups/owner.py", CONTENT, uid=1000),
        _member("opt/dups/hl1", b"hard" * 64),
        _member("opt/dups/hl2", type=tarfile.LNKTYPE, linkname="opt/dups/hl1"),
        _member("opt/dups/hl3", b"hard" * 64),
        _member("opt/dups/sym", type=tarfile.SYMTYPE, linkname="a.py"),
        _member("opt/dups/marker.txt", MARKER),
    ]
    xattr, data = _member("opt/dups/xattr.py", CONTENT)
    xattr.pax_headers = {"SCHILY.xattr.user.tag": "kept apart"}
    members.append((xattr, data))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, payload in sorted(members, key=lambda m: m[0].name.count("/")):
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return buffer.getvalue()


DOCKERFILE = """FROM {base}
LABEL pipeline.namespace={ns} fixture.label="a value with spaces" fixture.dollar="cost: $$5"
USER root
ADD dups.tar /
ENV FIXTURE_PLAIN=1 FIXTURE_TRICKY="spaces and \\"quotes\\" and \\$HOME"
ENTRYPOINT ["/usr/bin/env", "--"]
CMD ["python3", "-c", "print('hello')"]
WORKDIR /opt/dups
EXPOSE 8888/tcp 9999/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
USER jovyan
"""


def build_fixture(client: docker.DockerClient, ns: str, base: str, ref: str, extra: str = "") -> str:
    files = {"Dockerfile": (DOCKERFILE.format(base=base, ns=ns) + extra).encode(), "dups.tar": dups_tar()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, tag=ref, rm=True, forcerm=True,
                                   network_mode="none")
    return str(image.id)


def in_image(client: docker.DockerClient, ref: str, code: str) -> str:
    out = client.containers.run(ref, ["python3", "-c", code], entrypoint=[], user="0", remove=True,
                                network_mode="none", labels={"pipeline.namespace": ref.split("/")[0]})
    return out.decode()


INODES = ("import os, json; print(json.dumps({n: os.lstat('/opt/dups/' + n).st_ino for n in "
          "['a.py','b.py','sub/c.py','mode.py','owner.py','xattr.py','hl1','hl2','hl3']}))")


@pytest.fixture
def mission(docker_client: docker.DockerClient, project: Project, base: str) -> tuple[Project, str]:
    """The project with alpha's mission tag on the python3 fixture image (nothing built by doit)."""
    ref = project.mission_tag("alpha")
    build_fixture(docker_client, project.ns, base, ref)
    return project, ref


def xattrs_supported(client: docker.DockerClient, ref: str) -> bool:
    return "kept apart" in in_image(client, ref, "import os; print(os.getxattr('/opt/dups/xattr.py', 'user.tag'))"
                                    " if 'user.tag' in os.listxattr('/opt/dups/xattr.py') else print('none')")


def test_crosslink_links_only_true_duplicates(docker_client: docker.DockerClient, mission: tuple[Project, str]) -> None:
    project, ref = mission
    result = project.run("crosslink:alpha", "--paths", "/opt/dups")
    assert_ok(result)
    crossed = f"{project.ns}/squash-alpha:crosslinked"
    ino = json.loads(in_image(docker_client, crossed, INODES))
    assert ino["a.py"] == ino["b.py"] == ino["sub/c.py"]
    assert len({ino["a.py"], ino["mode.py"], ino["owner.py"]}) == 3  # mode and owner keep them apart
    assert ino["hl1"] == ino["hl2"] == ino["hl3"]
    if xattrs_supported(docker_client, ref):
        assert ino["xattr.py"] != ino["a.py"]
    assert in_image(docker_client, crossed, "import os; print(os.readlink('/opt/dups/sym'))").strip() == "a.py"
    assert "files linked" in result.output or "linked" in result.output
    # keyed on the source image: a second run does nothing
    again = project.run("crosslink:alpha", "--paths", "/opt/dups")
    assert_ok(again)
    assert "crosslink:alpha" not in again.ran, again
    assert_no_containers(docker_client, project.ns)


def test_squash_round_trips_config_and_verifies(docker_client: docker.DockerClient, mission: tuple[Project, str],
                                                tmp_path: Path) -> None:
    project, ref = mission
    before = docker_client.api.inspect_image(ref)
    result = project.run("squash:alpha", "--paths", "/opt/dups")
    assert_ok(result)
    after = docker_client.api.inspect_image(ref)
    assert after["Id"] != before["Id"]
    assert len(after["RootFS"]["Layers"]) == 1
    for key in CONFIG_KEYS:
        assert before["Config"].get(key) == after["Config"].get(key), key
    labels = dict(after["Config"]["Labels"])
    squash_label = json.loads(labels.pop("pipeline.squash"))
    assert labels == before["Config"]["Labels"]
    assert squash_label["source"] == before["Id"]
    short = before["Id"].split(":")[1][:12]
    assert image_id(docker_client, f"{ref.rsplit(':', 1)[0]}:pre-squash-{short}") == before["Id"]
    assert image_id(docker_client, f"{project.ns}/squash-alpha:crosslinked") is None  # intermediates removed
    record = json.loads((project.root / "build" / "squash" / "alpha.json").read_text())
    assert record["source"] == before["Id"] and record["size_after"] > 0 and "verify" in record["seconds"]
    ino = json.loads(in_image(docker_client, ref, INODES))
    assert ino["a.py"] == ino["b.py"]  # the hard links survive the export/import
    assert not list((project.root / "build" / "squash").glob("*.tar")), "an archive was written"
    # the squashed image is current: nothing reruns
    again = project.run("squash:alpha")
    assert_ok(again)
    assert "squash:alpha" not in again.ran
    assert_no_containers(docker_client, project.ns)


def test_export_then_import_through_an_archive(docker_client: docker.DockerClient,
                                               mission: tuple[Project, str]) -> None:
    project, ref = mission
    assert_ok(project.run("export:alpha"))
    archive = project.root / "build" / "squash" / "alpha.tar"
    assert archive.is_file() and archive.stat().st_size > 1_000_000
    result = project.run("import:alpha")
    assert_ok(result)
    assert "alpha.tar" in result.output
    imported = docker_client.api.inspect_image(f"{project.ns}/squash-alpha:imported")
    assert imported["Config"]["Cmd"] == docker_client.api.inspect_image(ref)["Config"]["Cmd"]
    assert_no_containers(docker_client, project.ns)


def test_import_options_are_part_of_its_up_to_date_check(docker_client: docker.DockerClient,
                                                         mission: tuple[Project, str], tmp_path: Path) -> None:
    project, _ = mission
    imported = f"{project.ns}/squash-alpha:imported"
    assert_ok(project.run("export:alpha"))
    assert_ok(project.run("import:alpha"))
    assert "import:alpha" in project.run("import:alpha").uptodate
    given = tmp_path / "given.tar"
    shutil.copyfile(project.root / "build" / "squash" / "alpha.tar", given)

    first = project.run("import:alpha", "--archive", str(given))  # was "up to date": --archive ignored
    assert_ok(first)
    assert "import:alpha" in first.ran and "given.tar" in first.output, first
    assert "import:alpha" in project.run("import:alpha", "--archive", str(given)).uptodate

    with tarfile.open(given, "a") as tar:  # a new file in the same archive: it must be read again
        data = b"only in the given archive\n"
        info = tarfile.TarInfo("given-marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    again = project.run("import:alpha", "--archive", str(given))
    assert_ok(again)
    assert "import:alpha" in again.ran, again
    out = docker_client.containers.run(imported, ["cat", "/given-marker"], entrypoint=[], remove=True,
                                       network_mode="none", labels={"pipeline.namespace": project.ns})
    assert out == data

    plain = project.run("import:alpha")  # the image came from another archive: no longer current
    assert_ok(plain)
    assert "import:alpha" in plain.ran, plain
    kept = tmp_path / "kept.tar"
    assert "import:alpha" in project.run("import:alpha", "--keep-archive", str(kept)).ran
    assert kept.is_file() and kept.stat().st_size > 1_000_000
    assert "import:alpha" in project.run("import:alpha", "--keep-archive", str(kept)).uptodate
    assert_no_containers(docker_client, project.ns)


def _settings(project: Project) -> Any:
    from pipeline import config

    return config.load(project.deployments, config.collect_overrides({}), project.root / "build")


def test_verify_names_the_differing_path(docker_client: docker.DockerClient, mission: tuple[Project, str],
                                         base: str) -> None:
    from pipeline.engine import Engine
    from pipeline.errors import PipelineError
    from pipeline.stages.squash import verify

    project, ref = mission
    other = f"{project.ns}/changed:latest"
    build_fixture(docker_client, project.ns, base, other, "USER root\nCOPY Dockerfile /opt/dups/a.py\n")
    engine = Engine()
    settings = _settings(project)
    verify(settings, engine, engine.require(ref, ""), engine.require(ref, ""), "same")
    with pytest.raises(PipelineError, match="/opt/dups/a.py"):
        verify(settings, engine, engine.require(ref, ""), engine.require(other, ""), "changed")
    assert_no_containers(docker_client, project.ns)


def _corrupt(chunks: Iterator[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = (carry + chunk).replace(MARKER, CORRUPT)
        carry, out = data[-64:], data[:-64]
        yield out
    yield carry.replace(MARKER, CORRUPT)


def test_corrupted_import_keeps_the_tag(docker_client: docker.DockerClient, mission: tuple[Project, str]) -> None:
    from pipeline.engine import Engine
    from pipeline.errors import PipelineError
    from pipeline.stages.squash import squash

    project, ref = mission
    before = image_id(docker_client, ref)
    with pytest.raises(PipelineError, match="marker.txt"):
        squash(_settings(project), Engine(), "alpha", ("/opt/dups",), transform=_corrupt)
    assert image_id(docker_client, ref) == before
    assert image_id(docker_client, f"{project.ns}/squash-alpha:imported") is None
    assert not [t for t in docker_client.images.get(before).tags if "pre-squash" in t]
    assert_no_containers(docker_client, project.ns)


def test_crosslink_without_python3_fails_clearly(docker_client: docker.DockerClient, project: Project,
                                                 rootfs_tar: Path) -> None:
    from helpers import import_rootfs

    ref = project.mission_tag("alpha")
    repo, tag = ref.rsplit(":", 1)
    import_rootfs(docker_client, rootfs_tar, repo, tag)  # busybox: no python3
    result = project.run("crosslink:alpha")
    assert_clean_failure(result, "crosslink:alpha", "python3")
    assert_no_containers(docker_client, project.ns)

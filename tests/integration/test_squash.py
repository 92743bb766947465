"""Crosslink, export/import and squash against a real dockerd, on a busybox image (no python3 in it).

The fixture image is the busybox rootfs imported, plus a tar of duplicates (ADD) and
every configuration field import cannot set directly.  File trees are read by the test
itself, through ``docker export`` and Python's tarfile, independently of the pipeline.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from helpers import Project, assert_no_containers, assert_ok, image_id, import_rootfs

pytestmark = pytest.mark.docker

CONTENT = b"print('the same module')\n" * 40
MARKER = b"ORIGINAL-MARKER-CONTENT-0001"
# security.capability (cap_net_bind_service+ep): the one xattr docker export carries
CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts", "Volumes", "StopSignal",
               "Healthcheck", "Shell", "OnBuild")


def _member(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, **kw: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
    for key, value in kw.items():
        setattr(info, key, value)
    return info, data


def dups_tar() -> bytes:
    members = [
        _member("opt/dups", type=tarfile.DIRTYPE, mode=0o755),
        _member("opt/dups/sub", type=tarfile.DIRTYPE, mode=0o755),
        _member("opt/dups/a.py", CONTENT),
        _member("opt/dups/b.py", CONTENT),
        _member("opt/dups/sub/c.py", CONTENT),
        _member("opt/dups/mode.py", CONTENT, mode=0o755),
        _member("opt/dups/owner.py", CONTENT, uid=1000),
        _member("opt/dups/hl1", b"hard" * 64),
        _member("opt/dups/hl2", type=tarfile.LNKTYPE, linkname="opt/dups/hl1"),
        _member("opt/dups/hl3", b"hard" * 64),
        _member("opt/dups/sym", type=tarfile.SYMTYPE, linkname="a.py"),
        _member("opt/dups/marker.txt", MARKER),
        _member("opt/dups/empty1"),
        _member("opt/dups/empty2"),
        _member("elsewhere", type=tarfile.DIRTYPE, mode=0o755),
        _member("elsewhere/a.py", CONTENT),  # outside --paths: never linked
    ]
    cap, data = _member("opt/dups/cap.py", CONTENT)
    cap.pax_headers = {"SCHILY.xattr.security.capability": CAPABILITY.decode("utf-8", "surrogateescape")}
    members.append((cap, data))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return buffer.getvalue()


DOCKERFILE = """FROM {base}
LABEL pipeline.namespace={ns} fixture.label="a value with spaces" fixture.dollar="cost: $$5"
ADD dups.tar /
ENV FIXTURE_PLAIN=1 FIXTURE_TRICKY="spaces and \\"quotes\\" and \\$HOME"
ENTRYPOINT ["/bin/env", "--"]
CMD ["sh", "-c", "echo hello"]
WORKDIR /opt/dups
EXPOSE 8888/tcp 9999/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-e", "-c"]
HEALTHCHECK --interval=31s --retries=4 CMD ["true"]
USER 1000
"""


def build_fixture(client: docker.DockerClient, project: Project, ref: str) -> str:
    base_repo = f"{project.ns}/busybox"
    import_rootfs(client, project.rootfs, base_repo, "latest")
    files = {"Dockerfile": DOCKERFILE.format(base=f"{base_repo}:latest", ns=project.ns).encode(),
             "dups.tar": dups_tar()}
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


@pytest.fixture
def mission(docker_client: docker.DockerClient, project: Project) -> tuple[Project, str]:
    """The project with alpha's mission tag on the busybox fixture image (nothing built by doit)."""
    ref = project.mission_tag("alpha")
    build_fixture(docker_client, project, ref)
    return project, ref


# -- reading an image's tree, independently of the pipeline --------------------------------------

def tree(client: docker.DockerClient, ref: str, ns: str) -> tuple[dict[str, tuple], list[set[str]]]:
    """path -> (type, mode, uid, gid, sha256 of content, symlink target, xattrs); and the hard-link groups."""
    container = client.api.create_container(ref, command=["true"], labels={"pipeline.namespace": ns})["Id"]
    try:
        data = b"".join(client.api.export(container))
    finally:
        client.api.remove_container(container, force=True)
    entries: dict[str, tuple] = {}
    inode: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            path = "/" + m.name.rstrip("/")
            xattrs = tuple(sorted((k, v) for k, v in m.pax_headers.items() if "xattr" in k))
            if m.islnk():
                first = "/" + m.linkname
                inode[path] = inode.get(first, first)
                entries[path] = entries[first][:6] + (xattrs or entries[first][6],)
                continue
            digest = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isreg() else "-"
            kind = "f" if m.isreg() else m.type.decode()
            entries[path] = (kind, m.mode, m.uid, m.gid, digest, m.linkname if m.issym() else "", xattrs)
            if m.isreg():
                inode[path] = path
    groups: dict[str, set[str]] = {}
    for path, first in inode.items():
        groups.setdefault(first, set()).add(path)
    return entries, [g for g in groups.values() if len(g) > 1]


def assert_same_tree_links_allowed(before: tuple[dict, list], after: tuple[dict, list], allowed: str) -> int:
    """Identical trees; every link in ``after`` existed before or joins equal files under ``allowed``."""
    (old, old_groups), (new, new_groups) = before, after
    assert old.keys() == new.keys()
    differing = [p for p in old if old[p] != new[p]]
    assert not differing, [(p, old[p], new[p]) for p in differing[:5]]
    made = 0
    for group in new_groups:
        if any(group <= g for g in old_groups):
            continue
        made += 1
        assert len({old[p] for p in group}) == 1, group  # content, mode, owner, xattrs all equal
        assert all(p.startswith(allowed) for p in group if not any(p in g for g in old_groups)), group
    for group in old_groups:  # existing hard links are kept
        assert any(group <= g for g in new_groups), group
    return made


def link_groups_by_name(groups: list[set[str]]) -> list[set[str]]:
    return sorted((g for g in groups if any(p.startswith("/opt/dups/") for p in g)), key=sorted)


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


# -- tests -----------------------------------------------------------------------------------------

def test_busybox_image_crosslinks_exports_imports_and_squashes(docker_client: docker.DockerClient,
                                                               mission: tuple[Project, str]) -> None:
    project, ref = mission
    ns = project.ns
    before = docker_client.api.inspect_image(ref)
    source_tree = tree(docker_client, ref, ns)

    assert_ok(project.run("crosslink:alpha", "--paths", "/opt/dups"))
    crossed = f"{ns}/squash-alpha:crosslinked"
    crossed_tree = tree(docker_client, crossed, ns)
    assert assert_same_tree_links_allowed(source_tree, crossed_tree, "/opt/dups/") >= 1
    groups = link_groups_by_name(crossed_tree[1])
    assert {"/opt/dups/a.py", "/opt/dups/b.py", "/opt/dups/sub/c.py"} in groups
    assert {"/opt/dups/hl1", "/opt/dups/hl2", "/opt/dups/hl3"} in groups
    linked = set().union(*groups)
    for apart in ("mode.py", "owner.py", "cap.py", "empty1", "marker.txt"):
        assert f"/opt/dups/{apart}" not in linked, apart
    assert "/elsewhere/a.py" not in set().union(*crossed_tree[1])
    if source_tree[0]["/opt/dups/cap.py"][6]:  # the engine kept the capability: it must survive
        assert crossed_tree[0]["/opt/dups/cap.py"][6] == source_tree[0]["/opt/dups/cap.py"][6]
    again = project.run("crosslink:alpha", "--paths", "/opt/dups")
    assert_ok(again)
    assert "crosslink:alpha" not in again.ran, again

    assert_ok(project.run("export:alpha"))
    assert (project.root / "build" / "squash" / "alpha.tar").is_file()
    imported = project.run("import:alpha")
    assert_ok(imported)
    assert tree(docker_client, f"{ns}/squash-alpha:imported", ns)[0] == source_tree[0]

    result = project.run("squash:alpha", "--paths", "/opt/dups")
    assert_ok(result)
    after = docker_client.api.inspect_image(ref)
    assert after["Id"] != before["Id"]
    assert len(after["RootFS"]["Layers"]) == 1
    for key in CONFIG_KEYS:
        assert before["Config"].get(key) == after["Config"].get(key), key
    labels = dict(after["Config"]["Labels"])
    assert json.loads(labels.pop("pipeline.squash"))["source"] == before["Id"]
    assert labels == before["Config"]["Labels"]
    short = before["Id"].split(":")[1][:12]
    assert image_id(docker_client, f"{ref.rsplit(':', 1)[0]}:pre-squash-{short}") == before["Id"]
    record = json.loads((project.root / "build" / "squash" / "alpha.json").read_text())
    assert record["squashed"] == after["Id"] and record["layer"] == after["RootFS"]["Layers"][0]
    squashed_tree = tree(docker_client, ref, ns)
    assert assert_same_tree_links_allowed(source_tree, squashed_tree, "/opt/dups/") >= 1
    assert record["paths"] == ["/opt/dups"]
    again = project.run("squash:alpha", "--paths", "/opt/dups")
    assert_ok(again)
    assert "squash:alpha" not in again.ran
    assert_no_containers(docker_client, ns)


def test_crosslink_and_squash_options_are_part_of_their_up_to_date_checks(
        docker_client: docker.DockerClient, mission: tuple[Project, str], tmp_path: Path) -> None:
    project, ref = mission
    ns = project.ns
    crossed = f"{ns}/squash-alpha:crosslinked"
    wider = "/opt/dups,/elsewhere"
    assert_ok(project.run("crosslink:alpha", "--paths", "/opt/dups"))
    first = image_id(docker_client, crossed)
    assert "crosslink:alpha" in project.run("crosslink:alpha", "--paths", "/opt/dups").uptodate
    wide = project.run("crosslink:alpha", "--paths", wider)  # was "up to date": --paths ignored
    assert_ok(wide)
    assert "crosslink:alpha" in wide.ran and "linked under /opt/dups" in wide.output, wide
    assert image_id(docker_client, crossed) != first
    assert any("/elsewhere/a.py" in g for g in tree(docker_client, crossed, ns)[1])
    assert "crosslink:alpha" in project.run("crosslink:alpha", "--paths", wider).uptodate

    assert_ok(project.run("squash:alpha", "--paths", "/opt/dups"))
    assert not any("/elsewhere/a.py" in g for g in tree(docker_client, ref, ns)[1])
    assert "squash:alpha" in project.run("squash:alpha", "--paths", "/opt/dups").uptodate
    widened = project.run("squash:alpha", "--paths", wider)  # was "nothing to do": already one layer
    assert_ok(widened)
    assert "squash:alpha" in widened.ran, widened
    assert any("/elsewhere/a.py" in g for g in tree(docker_client, ref, ns)[1])
    assert "squash:alpha" in project.run("squash:alpha", "--paths", wider).uptodate
    kept = tmp_path / "kept.tar"
    keeping = project.run("squash:alpha", "--paths", wider, "--keep-archive", str(kept))
    assert_ok(keeping)
    assert "squash:alpha" in keeping.ran and kept.stat().st_size > 1_000_000, keeping
    with tarfile.open(kept) as tar:
        assert "opt/dups/marker.txt" in tar.getnames()
    assert "squash:alpha" in project.run("squash:alpha", "--paths", wider, "--keep-archive", str(kept)).uptodate
    assert "squash:alpha" in project.run("squash:alpha", "--paths", wider).uptodate  # no archive asked for
    kept.unlink()
    assert "squash:alpha" in project.run("squash:alpha", "--paths", wider, "--keep-archive", str(kept)).ran
    assert kept.is_file()
    assert len(docker_client.api.inspect_image(ref)["RootFS"]["Layers"]) == 1
    assert_no_containers(docker_client, ns)


def _truncated(chunks: Iterator[bytes]) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) > 300_000:
            yield chunk[:300_000 - sent]
            return
        sent += len(chunk)
        yield chunk


def _bad_header(chunks: Iterator[bytes]) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        if first:
            chunk = b"X" + chunk[1:]  # the first member's name: its checksum no longer matches
            first = False
        yield chunk


def _corrupt_sent(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield bytes(chunk).replace(MARKER, b"CORRUPTED-MARKER-CONTENT-001")


@pytest.mark.parametrize(("tamper", "needle"), [
    ({"tamper_export": _truncated}, "truncated"),
    ({"tamper_export": _bad_header}, "checksum"),
    ({"tamper_sent": _corrupt_sent}, "damaged"),
], ids=["truncated", "corrupt-header", "corrupted-on-the-way"])
def test_a_bad_stream_aborts_in_one_line_and_tags_nothing(docker_client: docker.DockerClient,
                                                          mission: tuple[Project, str], tamper: dict[str, Any],
                                                          needle: str) -> None:
    from pipeline.engine import Engine
    from pipeline.errors import PipelineError
    from pipeline.stages.squash import squash

    project, ref = mission
    before = image_id(docker_client, ref)
    mine = {"label": f"pipeline.namespace={project.ns}"}  # the daemon is shared: look at this test's only
    images_before = {i["Id"] for i in docker_client.api.images(all=True, filters=mine)}
    with pytest.raises(PipelineError) as caught:
        squash(_settings(project), Engine(), "alpha", ("/opt/dups",), **tamper)
    message = str(caught.value)
    assert needle in message and "\n" not in message and "nothing was tagged" in message, message
    assert image_id(docker_client, ref) == before
    assert not [t for t in docker_client.images.get(before).tags if "pre-squash" in t]
    made = {i["Id"] for i in docker_client.api.images(all=True, filters=mine)} - images_before
    assert not made, f"images left behind: {made}"
    assert_no_containers(docker_client, project.ns)


def test_squash_patch_squash_gives_one_layer(docker_client: docker.DockerClient, mission: tuple[Project, str],
                                             tmp_path: Path) -> None:
    project, ref = mission
    assert_ok(project.run("squash:alpha", "--paths", "/opt/dups"))
    script = tmp_path / "fix.sh"
    script.write_text("#!/bin/sh\necho patched > /opt/dups/patched.txt\n")
    assert_ok(project.run("patch:alpha", "--script", str(script), "--author", "t@example.org",
                          "--description", "a fix"))
    patched = docker_client.api.inspect_image(ref)
    assert len(patched["RootFS"]["Layers"]) == 2
    assert not patched["Config"]["Labels"].get("pipeline.squash")  # a patch does not inherit it
    info = project.info("squash:alpha")
    assert "2 layers" in info.output, info
    result = project.run("squash:alpha", "--paths", "/opt/dups")
    assert_ok(result)
    assert "squash:alpha" in result.ran, result
    again = docker_client.api.inspect_image(ref)
    assert len(again["RootFS"]["Layers"]) == 1
    entries, _ = tree(docker_client, ref, project.ns)
    assert "/opt/dups/patched.txt" in entries
    assert [p for p in entries if p.startswith("/opt/patches/") and p.endswith("/metadata.yaml")]
    assert_no_containers(docker_client, project.ns)


def test_files_above_the_spool_bound_are_reread_and_still_linked(docker_client: docker.DockerClient,
                                                                 mission: tuple[Project, str]) -> None:
    from pipeline.engine import Engine
    from pipeline.stages.squash import squash

    project, ref = mission
    source_tree = tree(docker_client, ref, project.ns)
    result = squash(_settings(project), Engine(), "alpha", ("/opt/dups",), spool_bound=len(CONTENT) - 1)
    assert result.files_linked >= 3
    squashed_tree = tree(docker_client, ref, project.ns)
    assert assert_same_tree_links_allowed(source_tree, squashed_tree, "/opt/dups/") >= 1
    assert {"/opt/dups/a.py", "/opt/dups/b.py", "/opt/dups/sub/c.py"} in squashed_tree[1]
    assert_no_containers(docker_client, project.ns)


def test_the_census_from_the_layer_directories_never_counts_too_few(docker_client: docker.DockerClient,
                                                                    mission: tuple[Project, str]) -> None:
    """The model (stat data of the engine's overlay2 layers) against the real export stream, size by size."""
    from pipeline.engine import Engine
    from pipeline.stages.relink import DEFAULT_PATHS, census
    from pipeline.tarstream import Roots, count_sizes

    project, ref = mission
    roots = ("/opt", *DEFAULT_PATHS)
    container = docker_client.containers.create(ref, command=["true"], labels={"pipeline.namespace": project.ns})
    try:
        dirs = Engine().layer_dirs(container.id)
        assert dirs, "this engine is local with overlay2: its layer directories should be readable"
        counted = count_sizes(dirs, Roots(roots))
        recurring = census(Engine(), container.id, roots)
        assert counted is not None and recurring == {s: n for s, n in counted.items() if n > 1}
        exported: dict[int, int] = {}
        holds = Roots(roots).holds
        with tarfile.open(fileobj=io.BytesIO(b"".join(container.export())), mode="r|") as tar:
            for m in tar:
                if m.isreg() and m.size and holds("/" + m.name.lstrip("./")):
                    exported[m.size] = exported.get(m.size, 0) + 1
    finally:
        container.remove()
    assert exported, "the fixture image has candidate files under /opt"
    assert all(counted.get(size, 0) >= n for size, n in exported.items()), \
        {s: (n, counted.get(s, 0)) for s, n in exported.items() if counted.get(s, 0) < n}
    assert any(n > 1 for n in exported.values()), "the fixture's duplicates are among the sizes that recur"
    assert_no_containers(docker_client, project.ns)

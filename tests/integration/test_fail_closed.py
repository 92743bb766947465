"""Keys that fail closed: after an edit, plain `doit` gives an image that holds the edit.

One row per Dockerfile form that once kept a stale image; each row's check runs
inside the rebuilt mission image.  Also: keys that do not depend on the runner's
umask, and a same-size rewrite with its mtime restored.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from helpers import (
    IMAGE_STAGES,
    Project,
    RunResult,
    assert_image_stages,
    assert_nothing_ran,
    doit_command,
    doit_env,
    run_in_image,
)

from pipeline.buildctx.send import BuildContext
from pipeline.engine import BuildRequest, Engine
from pipeline.errors import BuildFailed

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class Form:
    id: str
    lines: str  # appended to alpha's Dockerfile.custom
    setup: Callable[[Path], None]
    edit: Callable[[Path], None]
    check: str  # shell, run in the image
    before: str
    after: str


def _files(**files: str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        for rel, text in files.items():
            path = root / rel.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return write


def _link(link: str, target: str, **files: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        _files(**files)(root)
        os.symlink(target, root / link)
    return make


def _build_arg(value: str) -> Callable[[Path], None]:
    def set_arg(root: Path) -> None:
        path = root / "deployment.yaml"
        text = path.read_text().replace("build_args: {B: '9'}\n", "")
        path.write_text(text + f"build_args: {{B: '{value}'}}\n")
    return set_arg


FORMS = [
    Form("json-after-flag", 'COPY --chown=0:0 ["c.txt", "/opt/c.txt"]', _files(**{"c.txt": "c1"}),
         _files(**{"c.txt": "c2"}), "cat /opt/c.txt", "c1", "c2"),
    Form("symlink-file", "COPY link.txt /opt/", _link("link.txt", "real.txt", **{"real.txt": "r1"}),
         _files(**{"real.txt": "r2"}), "cat /opt/link.txt", "r1", "r2"),
    Form("symlink-dir", "COPY dirlink/ /opt/d/", _link("dirlink", "realdir", realdir__f="f1"),
         _files(realdir__f="f2"), "cat /opt/d/f", "f1", "f2"),
    Form("new-empty-dir", "COPY tree/ /opt/tree/", _files(tree__sub__a="a"),
         lambda root: (root / "tree" / "x").mkdir(), "ls /opt/tree | tr '\\n' ' '", "sub ", "sub x "),
    Form("glob-bracket", "COPY [o]ne.md /opt/md/", _files(**{"one.md": "o1"}), _files(**{"one.md": "o2"}),
         "cat /opt/md/one.md", "o1", "o2"),
    Form("multi-arg", "ARG A=1 B=2\nRUN echo $B > /opt/b", _build_arg("9"), _build_arg("8"), "cat /opt/b",
         "9\n", "8\n"),
]


def test_each_edit_reaches_the_image(docker_client: docker.DockerClient, built: Project) -> None:
    alpha = built.path("alpha")
    for form in FORMS:
        form.setup(alpha)
    built.append("alpha/Dockerfile.custom", "RUN mkdir -p /opt\n" + "".join(f"{f.lines}\n" for f in FORMS))
    assert_image_stages(built.run(), {"build:alpha"})
    for form in FORMS:
        got = run_in_image(docker_client, built.mission_tag("alpha"), form.check)
        assert got == form.before, (form.id, got)
    for form in FORMS:
        form.edit(alpha)
        result = built.run()
        assert_image_stages(result, {"build:alpha"})
        got = run_in_image(docker_client, built.mission_tag("alpha"), form.check)
        assert got == form.after, f"{form.id}: the image kept {got!r} after the edit"
    # A directory's own mode is not sent (0755, as git sees it): no rebuild, and the image agrees.
    (alpha / "tree" / "sub").chmod(0o700)
    assert_nothing_ran(built.run())
    assert run_in_image(docker_client, built.mission_tag("alpha"), "stat -c %a /opt/tree/sub") == "755\n"


def test_same_size_rewrite_with_mtime_restored_rebuilds(built: Project) -> None:
    script = built.path("common/scripts/hello.sh")
    st = script.stat()
    text = script.read_text()
    script.write_text(text.replace("hello", "HELLO", 1))
    assert script.stat().st_size == st.st_size
    os.utime(script, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert_image_stages(built.run(), {"chain:common", "build:alpha", "build:beta"})


def run_with_umask(project_dir: Path, umask: str) -> RunResult:
    proc = subprocess.run(["sh", "-c", f'umask {umask} && exec "$@"', "sh", *doit_command(project_dir)],
                          check=False, capture_output=True, text=True, env=doit_env(), timeout=600)
    return RunResult.parse(proc.returncode, proc.stdout + proc.stderr)


def checkout(src: Path, dest: Path, umask: int) -> None:
    """Copy a tree the way a checkout under ``umask`` writes it (0644/0664, 0755/0775)."""
    shutil.copytree(src, dest, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o777 & ~umask)
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            executable = path.stat().st_mode & 0o100
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


def test_checkouts_under_different_umasks_share_images(project: Project, tmp_path: Path) -> None:
    first, second = tmp_path / "runner-022", tmp_path / "runner-002"
    checkout(project.deployments, first / "deployments", 0o022)
    checkout(project.deployments, second / "deployments", 0o002)
    one = run_with_umask(first, "022")
    assert one.rc == 0, one.output[-3000:]
    assert IMAGE_STAGES <= one.image_stages, one
    two = run_with_umask(second, "002")
    assert two.rc == 0, two.output[-3000:]
    assert not two.image_stages, f"the umask-002 checkout rebuilt {sorted(two.image_stages)}"


def test_a_source_the_context_lacks_fails_with_its_line(docker_client: docker.DockerClient, project: Project,
                                                         rootfs_tar: Path, tmp_path: Path) -> None:
    """What a model gap would do: Docker's own 'not found', reported at the failing step, never a stale image."""
    base = docker_client.api.import_image_from_file(str(rootfs_tar), repository=f"{project.ns}/gap", tag="base")
    del base
    parent = docker_client.images.get(f"{project.ns}/gap:base").id
    (tmp_path / "present.txt").write_text("x")
    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY present.txt /p\n"
    context = BuildContext(tmp_path, {}, text)  # the model "missed" present.txt
    request = BuildRequest("gap", tmp_path, tmp_path / "Dockerfile", {"BASE_IMAGE": parent},
                           {"pipeline.namespace": project.ns}, files=context)
    engine = Engine()
    try:
        with pytest.raises(BuildFailed) as failed:
            engine.build(request)
    finally:
        engine.api.close()
    assert failed.value.step == 3, str(failed.value)  # the classic builder counts the ARG before FROM
    assert "present.txt" in str(failed.value) and "not found" in str(failed.value), str(failed.value)

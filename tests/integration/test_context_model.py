"""The Dockerfile model against Docker itself: a differential test, one row per Dockerfile form.

Each row is built twice on the real engine: the ordinary way, with the whole
directory as the context, and the pipeline's way, with only the entries the
model keyed.  The copied trees must be identical, and every edit to a keyed
file must change the key while edits elsewhere must not.  The next form someone
finds is one more row.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
from helpers import import_rootfs

from pipeline.buildctx.collect import Collector, normal_mode
from pipeline.buildctx.send import BuildContext
from pipeline.dockerfile.analysis import BaseImage, analyse
from pipeline.engine import BuildRequest, Engine, find_buildkit_cli
from pipeline.hashing import FileHasher
from pipeline.keys import image_key, keyed_args

pytestmark = pytest.mark.docker

TREE = {
    "scripts/a.sh": "#!/bin/sh\necho a\n", "scripts/b.sh": "b\n", "scripts/sub/c.py": "c\n", "data.txt": "data\n",
    "notes.md": "notes\n", "x.py": "x\n", "y.py": "y\n", "one.md": "one\n", "c.txt": "c\n", "real.txt": "real\n",
    "realdir/f.txt": "f\n", "tree/top.txt": "top\n", "tree/sub/deep.txt": "deep\n",
}
LINKS = {"link.txt": "real.txt", "dirlink": "realdir", "scripts/inner-link": "../real.txt", "tree/rel": "top.txt"}
HEAD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


@dataclass(frozen=True)
class Case:
    id: str
    body: str
    keyed: tuple[str, ...] = ()  # edits that must change the key (and the image)
    unkeyed: tuple[str, ...] = ("x.py",)  # edits that must not
    args: dict[str, str] = field(default_factory=dict)
    dockerignore: str = ""
    buildkit: bool = False
    head: str = HEAD


CASES = [
    Case("json-after-flag", 'COPY --chown=0:0 ["c.txt", "/t/c.txt"]', ("c.txt",), ("data.txt",)),
    Case("symlink-file", "COPY link.txt /t/", ("real.txt",), ("c.txt",)),
    Case("symlink-dir", "COPY dirlink/ /t/d/", ("realdir/f.txt", "mkdir:realdir/new")),
    Case("directory", "COPY tree/ /t/tree/", ("tree/sub/deep.txt", "mkdir:tree/x", "chmod+x:tree/top.txt"),
         ("data.txt", "chmod700:tree/sub")),
    Case("glob-bracket", "COPY [o]ne.md /t/md/", ("one.md",), ("notes.md",)),
    Case("glob-star", "COPY *.py /t/py/", ("x.py", "new:z.py"), ("scripts/sub/c.py",)),
    Case("multi-arg", "ARG A=1 W=data\nCOPY ${W}.txt /t/", ("c.txt",), ("data.txt",), args={"W": "c"}),
    Case("default-expansion", "COPY ${NOPE:-notes}.md /t/", ("notes.md",), ("one.md",)),
    Case("env-from-stage", "ENV D=scripts\nFROM base\nCOPY $D/b.sh /t/", ("scripts/b.sh",), ("scripts/a.sh",),
         head="ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS base\n"),
    Case("env-from-parent", "COPY ${FROM_PARENT}/a.sh /t/", ("scripts/a.sh",), ("scripts/b.sh",)),
    Case("copy-dot", "COPY . /t/", ("one.md", "data.txt", "scripts/sub/c.py"), ("notes.md", "tree/top.txt"),
         dockerignore="*.md\n!one.md\ntree\n"),
    Case("stage-copy", "COPY data.txt /d\nFROM ${BASE_IMAGE}\nCOPY --from=b /d /t/d", ("data.txt",), ("c.txt",),
         head="ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS b\n"),
    Case("add-local", "ADD notes.md /t/", ("notes.md",)),
    Case("continuation", "COPY \\\n  data.txt \\\n  c.txt \\\n  /t/", ("data.txt", "c.txt"), ("one.md",)),
    Case("inner-links-stay", "COPY scripts/ /t/s/", ("scripts/a.sh",), ("real.txt",)),
    Case("bind-mount", "RUN --mount=type=bind,source=data.txt,target=/m mkdir /t && cp /m /t/d",
         ("data.txt",), ("c.txt",), buildkit=True),
    Case("buildkit-symlink-dir", "COPY dirlink/ /t/d/", ("realdir/f.txt",), buildkit=True),
    Case("buildkit-copy-dot", "COPY . /t/", ("one.md",), ("notes.md",), dockerignore="*.md\n!one.md\n", buildkit=True),
]


def make_tree(root: Path, case: Case) -> None:
    for rel, text in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "scripts/a.sh").chmod(0o755)
    (root / "tree/empty").mkdir()
    for rel, target in LINKS.items():
        os.symlink(target, root / rel)
    (root / ".dockerignore").write_text(case.dockerignore + "Dockerfile\n.dockerignore\n")


def normalise(root: Path) -> None:
    """Give the real tree the modes the pipeline sends, so the two builds can be compared."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode):
                path.chmod(normal_mode(st.st_mode))


def edit(root: Path, what: str) -> None:
    verb, _, rel = what.rpartition(":")
    path = root / rel
    if verb == "mkdir":
        path.mkdir()
    elif verb == "chmod700":
        path.chmod(0o700)
    elif verb == "chmod+x":
        path.chmod(0o755)
    elif verb == "new":
        path.write_text("new\n")
    else:
        with path.open("a") as fh:
            fh.write("edited\n")


def copied_tree(client: docker.DockerClient, image: str) -> dict[str, tuple]:
    """path -> (type, mode, content or link target) of everything under /t in the image."""
    container = client.api.create_container(image, command=["true"])["Id"]
    try:
        data = b"".join(client.api.export(container))
    finally:
        client.api.remove_container(container, force=True)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name.lstrip("./")
            if not (name == "t" or name.startswith("t/")):
                continue
            body = tar.extractfile(member).read() if member.isfile() else member.linkname
            out[name] = (member.type, member.mode & 0o7777, body)
    return out


class Pipeline:
    """The pipeline's own path for one case: model, key, and a build from the keyed context only."""

    def __init__(self, engine: Engine, parent: str, parent_env: tuple[str, ...]) -> None:
        self.engine = engine
        self.parent = parent
        self.parent_env = parent_env

    def plan(self, root: Path, case: Case) -> tuple[str, BuildContext]:
        text = case.head + case.body + "\n"
        buildargs = {"BASE_IMAGE": self.parent, **case.args}

        def images(ref: str, line: int) -> BaseImage:
            assert ref == self.parent, ref
            return BaseImage(self.parent, self.parent_env)

        model = analyse(text, buildargs=buildargs, images=images, buildkit=case.buildkit)
        collector = Collector(root, FileHasher(None), allow_empty_globs=case.buildkit)
        for source in model.sources:
            collector.add(source)
        entries = collector.with_parents()
        key = image_key(rendered=text, sources={}, files={r: e.keyed() for r, e in entries.items()},
                        images=model.images, urls=model.urls, args=keyed_args(model.declared, buildargs),
                        parent_id=self.parent)
        return key.digest, BuildContext(root, entries, text)

    def build(self, root: Path, case: Case, ns: str) -> str:
        _, context = self.plan(root, case)
        request = BuildRequest(f"diff:{case.id}", root, root / "Dockerfile", {"BASE_IMAGE": self.parent, **case.args},
                               {"pipeline.namespace": ns}, files=context, id_args=frozenset({"BASE_IMAGE"}))
        return self.engine.build(request, buildkit_cli=find_buildkit_cli() if case.buildkit else None)


def docker_build(client: docker.DockerClient, root: Path, case: Case, parent_tag: str, ns: str) -> str:
    """The ordinary build: the whole directory is the context."""
    (root / "Dockerfile").write_text(case.head + case.body + "\n")
    args = {"BASE_IMAGE": parent_tag, **case.args}
    if case.buildkit:
        iid = root.parent / f"{case.id}.iid"
        argv = [find_buildkit_cli(), "build", "-q", "--iidfile", str(iid), "--label", f"pipeline.namespace={ns}"]
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        subprocess.run([*argv, str(root)], check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "1"})
        return iid.read_text().strip()
    image, _ = client.images.build(path=str(root), buildargs=args, labels={"pipeline.namespace": ns}, rm=True,
                                   forcerm=True)
    return image.id


@pytest.fixture(scope="module")
def parent(docker_client: docker.DockerClient, rootfs_tar: Path, tmp_path_factory: pytest.TempPathFactory):
    """A busybox parent with an ENV the Dockerfiles may expand."""
    ns = "ptdiff" + os.urandom(3).hex()
    import_rootfs(docker_client, rootfs_tar, f"{ns}/bb", "latest")
    work = tmp_path_factory.mktemp("parent")
    (work / "Dockerfile").write_text(f"FROM {ns}/bb:latest\nENV FROM_PARENT=scripts\n")
    image, _ = docker_client.images.build(path=str(work), tag=f"{ns}/parent:latest", labels={"pipeline.namespace": ns})
    yield ns, image
    for ref in (f"{ns}/parent:latest", f"{ns}/bb:latest"):
        docker_client.images.remove(ref, force=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model_matches_docker(docker_client: docker.DockerClient, parent, tmp_path: Path, case: Case) -> None:
    if case.buildkit and not _has_buildkit():
        pytest.skip("no BuildKit-capable docker CLI")
    ns, parent_image = parent
    engine = Engine()
    pipeline = Pipeline(engine, parent_image.id, tuple(parent_image.attrs["Config"]["Env"]))
    made: list[str] = []
    try:
        for round_, edits in enumerate([(), *[(e,) for e in case.keyed]]):
            root = tmp_path / f"ctx{round_}"
            make_tree(root, case)
            for what in edits:
                edit(root, what)
            normalise(root)
            made.append(docker_build(docker_client, root, case, f"{ns}/parent:latest", ns))
            made.append(pipeline.build(root, case, ns))
            want, got = copied_tree(docker_client, made[-2]), copied_tree(docker_client, made[-1])
            assert got == want, f"{case.id} {edits}: the pipeline's context gave another tree than Docker's"
            assert want, f"{case.id}: nothing copied under /t (the row tests nothing)"
        base = tmp_path / "base"
        make_tree(base, case)
        key, _ = pipeline.plan(base, case)
        for what in case.keyed:
            root = tmp_path / f"in-{what.replace('/', '_').replace(':', '_')}"
            make_tree(root, case)
            edit(root, what)
            assert pipeline.plan(root, case)[0] != key, f"{case.id}: editing {what} left the key unchanged"
        for what in case.unkeyed:
            root = tmp_path / f"out-{what.replace('/', '_').replace(':', '_')}"
            make_tree(root, case)
            edit(root, what)
            assert pipeline.plan(root, case)[0] == key, f"{case.id}: editing {what} changed the key"
    finally:
        for image in dict.fromkeys(reversed(made)):  # both builds can give the same image (cache hits)
            try:
                docker_client.api.remove_image(image, force=True, noprune=False)
            except docker.errors.ImageNotFound:
                pass
        engine.api.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _has_buildkit() -> bool:
    try:
        find_buildkit_cli()
    except Exception:
        return False
    return True

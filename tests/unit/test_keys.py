"""Input keys and the Dockerfile model: which context entries count, how args and parents count, reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.buildctx.collect import Collector, ContextError
from pipeline.dockerfile.analysis import BaseImage, ModelError, analyse
from pipeline.hashing import FileHasher
from pipeline.keys import explain, image_key, keyed_args
from pipeline.render import add_cache_mounts

PARENT = "sha256:" + "p" * 64


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    for rel in ("scripts/a.sh", "scripts/b.sh", "scripts/sub/c.py", "data.txt", "notes.md", "x.py", "y.py",
                "one.md", "c.txt", "real.txt", "realdir/f.txt"):
        path = ctx / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    os.symlink("real.txt", ctx / "link.txt")
    os.symlink("realdir", ctx / "dirlink")
    os.symlink("../outside", ctx / "escape")
    os.symlink("real.txt", ctx / "scripts" / "inner-link")
    return ctx


def lookup(env: tuple[str, ...] = ()):
    def images(ref: str, line: int) -> BaseImage:
        return BaseImage(PARENT if ref == PARENT else "sha256:" + ref.replace(":", "-"), env)
    return images


def model(text: str, ctx: Path, args: dict[str, str] | None = None, *, buildkit: bool = True,
          env: tuple[str, ...] = ()) -> dict[str, str]:
    analysis = analyse(text, buildargs={"BASE_IMAGE": PARENT, **(args or {})}, images=lookup(env), buildkit=buildkit)
    collector = Collector(ctx, FileHasher(None), allow_empty_globs=buildkit)
    for source in analysis.sources:
        collector.add(source)
    return {rel: entry.keyed() for rel, entry in collector.entries.items()}


def files_of(text: str, ctx: Path, args: dict[str, str] | None = None, **kw: object) -> list[str]:
    return sorted(model(text, ctx, args, **kw))  # type: ignore[arg-type]


HEAD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("COPY scripts/a.sh /o/", ["scripts/a.sh"]),
        ("COPY scripts/ /o/", ["scripts", "scripts/a.sh", "scripts/b.sh", "scripts/inner-link", "scripts/sub",
                               "scripts/sub/c.py"]),
        ("COPY ./scripts /o/", ["scripts", "scripts/a.sh", "scripts/b.sh", "scripts/inner-link", "scripts/sub",
                                "scripts/sub/c.py"]),
        ("COPY *.py /o/", ["x.py", "y.py"]),
        ("COPY scripts/*.sh /o/", ["scripts/a.sh", "scripts/b.sh"]),
        ('ADD ["data.txt", "notes.md", "/o/"]', ["data.txt", "notes.md"]),
        ('COPY --chown=0:0 ["c.txt", "/opt/c.txt"]', ["c.txt"]),
        ("COPY --chown=1:1 --chmod=644 --link data.txt /o/", ["data.txt"]),
        ("COPY [o]ne.md /opt/md/", ["one.md"]),
        ("COPY link.txt /opt/", ["link.txt", "real.txt"]),
        ("COPY dirlink/ /opt/d/", ["dirlink", "realdir", "realdir/f.txt"]),
        ("COPY dirlink/f.txt /opt/d/", ["dirlink", "realdir/f.txt"]),
        ("COPY --from=builder /a /b", []),
        ("COPY --from=other:1.0 /a /b", []),
        ("ADD --checksum=sha256:abc https://example.invalid/f.tgz /o/", []),
        ("RUN echo no copy", []),
        ("RUN --mount=type=bind,source=data.txt,target=/d cat /d", ["data.txt"]),
        ("RUN --mount=type=cache,target=/root/.cache true", []),
        ("RUN --mount=type=bind,from=builder,source=/x,target=/x true", []),
        ("COPY <<EOF /o/x\nhello\nEOF", []),
        ("RUN <<EOF\nCOPY data.txt /nope\nEOF", []),
        ("ARG WHICH=data\nCOPY ${WHICH}.txt /o/", ["data.txt"]),
        ("ARG A=1 WHICH=data\nCOPY ${WHICH:-x}.txt ${NOPE:-notes}.md /o/", ["data.txt", "notes.md"]),
        ("ENV DIR=scripts\nCOPY $DIR/a.sh /o/", ["scripts/a.sh"]),
        ("COPY ${FROM_PARENT}/a.sh /o/", ["scripts/a.sh"]),
        ("COPY --exclude=*.py scripts/sub/ /o/", ["scripts/sub"]),
        ("COPY \\\n  data.txt \\\n  /o/", ["data.txt"]),
    ],
)
def test_only_read_entries_count(context: Path, body: str, expected: list[str]) -> None:
    text = HEAD + ("FROM x AS builder\nFROM ${BASE_IMAGE}\n" if "builder" in body else "") + body + "\n"
    assert files_of(text, context, env=("FROM_PARENT=scripts",)) == expected


def test_env_from_an_earlier_stage(context: Path) -> None:
    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS base\nENV D=scripts\nFROM base\nCOPY $D/b.sh /o/\n"
    assert files_of(text, context) == ["scripts/b.sh"]


def test_global_args_reach_from_only_unless_redeclared(context: Path) -> None:
    text = "ARG BASE_IMAGE\nARG W=data\nFROM ${BASE_IMAGE}\nCOPY ${W:-notes}.txt /o/\nARG W\nCOPY ${W}.txt /p/\n"
    # notes.txt does not exist: W is unset in the stage until redeclared
    with pytest.raises(ContextError, match="notes.txt not found"):
        files_of(text, context)
    text = "ARG BASE_IMAGE\nARG W=data\nFROM ${BASE_IMAGE}\nARG W\nCOPY ${W}.txt /p/\n"
    assert files_of(text, context) == ["data.txt"]
    assert files_of(text, context, {"W": "c"}) == ["c.txt"]


def test_copy_dot_uses_whole_context_minus_dockerignore(context: Path) -> None:
    (context / ".dockerignore").write_text("# comment\nscripts/sub\n*.md\n!one.md\nescape\n")
    got = files_of(HEAD + "COPY . /o/\n", context)
    assert "scripts/sub/c.py" not in got and "notes.md" not in got and ".dockerignore" not in got
    assert {"scripts/a.sh", "data.txt", "x.py", "one.md", "link.txt", "dirlink"} <= set(got)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ADD https://example.invalid/f.tgz /o/", "without --checksum"),
        ("ADD git://example.invalid/r.git /o/", "git repository"),
        ("ADD https://example.invalid/r.git#main /o/", "git repository"),
        ("COPY https://example.invalid/f /o/", "COPY cannot fetch a URL"),
        ("COPY escape /o/", "leaves the build context"),
        ("COPY missing.txt /o/", "not found"),
        ("COPY ../x /o/", "outside the build context"),
        ("COPY ${X:?unset_here} /o/", "unset_here"),
        ("COPY ${X/a/b} /o/", "cannot expand"),
        ("COPY .dockerignore /o/", "never sends .dockerignore"),
    ],
)
def test_refused(context: Path, body: str, message: str) -> None:
    with pytest.raises((ModelError, ContextError), match=message):
        files_of(HEAD + body + "\n", context)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("RUN <<EOF\ntrue\nEOF", "heredocs"),
        ("RUN --mount=type=bind,source=data.txt,target=/d true", "RUN --mount needs BuildKit"),
        ("COPY nomatch*.zzz /o/", "matches no file"),
        ("ADD --checksum=sha256:abc https://example.invalid/f /o/", "needs BuildKit"),
    ],
)
def test_refused_by_the_classic_builder(context: Path, body: str, message: str) -> None:
    with pytest.raises((ModelError, ContextError), match=message):
        files_of(HEAD + body + "\n", context, buildkit=False)


def test_fifo_in_a_copied_directory_is_refused(context: Path) -> None:
    os.mkfifo(context / "scripts" / "pipe")
    with pytest.raises(ContextError, match="FIFO"):
        files_of(HEAD + "COPY scripts/ /o/\n", context)


def test_other_images_are_keyed_by_id(context: Path) -> None:
    text = HEAD + "FROM tool:1 AS t\nFROM ${BASE_IMAGE}\nCOPY --from=helper:2 /x /x\n"
    analysis = analyse(text, buildargs={"BASE_IMAGE": PARENT}, images=lookup(), buildkit=True)
    assert analysis.images == {PARENT: PARENT, "tool:1": "sha256:tool-1", "helper:2": "sha256:helper-2"}
    assert analysis.final_base == PARENT


def test_final_stage_resolution() -> None:
    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS b\nFROM ubuntu:jammy AS other\nFROM b\nRUN true\n"
    assert analyse(text, buildargs={"BASE_IMAGE": PARENT}, images=lookup(), buildkit=True).final_base == PARENT
    text = "ARG BASE_CONTAINER=ubuntu:jammy\nFROM $BASE_CONTAINER\n"
    analysis = analyse(text, buildargs={"BASE_IMAGE": PARENT}, images=lookup(), buildkit=True)
    assert analysis.final_base == "ubuntu:jammy" and analysis.final_line == 2


def test_multi_arg_lines_are_all_declared() -> None:
    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG A=1 B=2\n"
    analysis = analyse(text, buildargs={"BASE_IMAGE": PARENT, "B": "9"}, images=lookup(), buildkit=False)
    assert analysis.declared == {"BASE_IMAGE": [None], "A": ["1"], "B": ["2"]}
    assert keyed_args(analysis.declared, {"BASE_IMAGE": PARENT, "B": "9", "Z": "1"}) == {"B": "9"}
    assert keyed_args(analysis.declared, {"BASE_IMAGE": PARENT, "B": "2"}) == {}  # set to its default


def key_of(files: dict[str, str], args: dict[str, str] | None = None, parent: str = "sha256:p1"):
    return image_key(rendered="FROM x\n", sources={"Dockerfile": "sha256:s"}, files=files, images={}, urls=[],
                     args=args or {}, parent_id=parent)


def test_key_tracks_content_mode_args_and_parent(context: Path) -> None:
    text = HEAD + "ARG USE_FROZEN=0\nCOPY scripts/a.sh /o/\nCOPY scripts/sub/ /p/\n"
    base = key_of(model(text, context))
    script = context / "scripts" / "a.sh"
    script.chmod(0o755)
    mode = key_of(model(text, context))
    script.chmod(0o775)  # the same mode as git sees it: 0755
    assert key_of(model(text, context)).digest == mode.digest
    script.write_text("new")
    content = key_of(model(text, context))
    (context / "scripts" / "sub" / "x").mkdir()
    tree = key_of(model(text, context))
    arg = key_of(model(text, context), {"USE_FROZEN": "1"})
    parent = key_of(model(text, context), {"USE_FROZEN": "1"}, parent="sha256:p2")
    digests = [k.digest for k in (base, mode, content, tree, arg, parent)]
    assert len(set(digests)) == 6
    assert explain(arg.parts, parent.parts) == ["parent changed sha256:p1 -> sha256:p2"]
    assert explain(tree.parts, arg.parts) == ["build arg USE_FROZEN added = '1'"]
    assert explain(base.parts, mode.parts) == ["file scripts/a.sh changed mode"]
    assert explain(mode.parts, content.parts) == ["file scripts/a.sh changed"]
    assert explain(content.parts, tree.parts) == ["directory scripts/sub/x added"]


def test_directory_modes_do_not_count(context: Path) -> None:
    text = HEAD + "COPY scripts/ /o/\n"
    before = key_of(model(text, context))
    (context / "scripts" / "sub").chmod(0o700)
    assert key_of(model(text, context)).digest == before.digest


def test_explain_without_record_and_for_dockerfile_sources() -> None:
    assert "no record" in explain(None, {})[0]
    old = {"dockerfile": {"rendered": "1", "sources": {"demo/Dockerfile.custom": "a"}}}
    new = {"dockerfile": {"rendered": "2", "sources": {"demo/Dockerfile.custom": "b"}}}
    assert explain(old, new) == ["Dockerfile demo/Dockerfile.custom changed"]
    same_sources = {"dockerfile": {"rendered": "3", "sources": {"demo/Dockerfile.custom": "b"}}}
    assert "rendered Dockerfile changed" in explain(new, same_sources)[0]


def test_cache_mounts_added_to_each_run_once_never_inside_heredocs() -> None:
    text = ("FROM x\nRUN apt-get update && \\\n    pip install y\nRUN --mount=type=cache,target=/c true\nCOPY a /b\n"
            "RUN <<EOF\nRUN this is a heredoc line\nEOF\n")
    out = add_cache_mounts(text)
    lines = out.splitlines()
    assert lines[1].startswith("RUN --mount=type=cache,target=/root/.cache/pip")
    assert "/var/cache/apt" in lines[1] and "/root/.npm" in lines[1]
    assert lines[2] == "    pip install y"
    assert lines[3] == "RUN --mount=type=cache,target=/c true"
    assert lines[5].startswith("RUN --mount=") and lines[6] == "RUN this is a heredoc line"
    assert add_cache_mounts(out) == out


def test_a_file_where_a_directory_should_be_is_not_found(context: Path) -> None:
    with pytest.raises(ContextError, match="not found"):
        files_of(HEAD + "COPY data.txt/x /o/\n", context)


def test_sources_from_variables_are_marked_dynamic() -> None:
    text = HEAD + "COPY $X/a plain /o/\nRUN --mount=type=bind,source=${Y},target=/y true\n"
    analysis = analyse(text, buildargs={"BASE_IMAGE": PARENT}, images=lookup(), buildkit=True)
    assert [(s.path, s.dynamic) for s in analysis.sources] == [("/a", True), ("plain", False), (".", True)]

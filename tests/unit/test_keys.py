"""Input keys: which context files count, how args and parents count, and the reasons given."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.hashing import FileHasher
from pipeline.keys import copy_sources, explain, image_key, parse, used_files
from pipeline.render import add_cache_mounts


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    for rel in ("scripts/a.sh", "scripts/b.sh", "scripts/sub/c.py", "data.txt", "notes.md", "x.py", "y.py"):
        path = ctx / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return ctx


def files_for(dockerfile: str, ctx: Path, args: dict[str, str] | None = None) -> list[str]:
    return used_files(ctx, copy_sources(parse(dockerfile, args or {})).local)


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM x\nCOPY scripts/a.sh /o/\n", ["scripts/a.sh"]),
        ("FROM x\nCOPY scripts/ /o/\n", ["scripts/a.sh", "scripts/b.sh", "scripts/sub/c.py"]),
        ("FROM x\nCOPY ./scripts /o/\n", ["scripts/a.sh", "scripts/b.sh", "scripts/sub/c.py"]),
        ("FROM x\nCOPY *.py /o/\n", ["x.py", "y.py"]),
        ("FROM x\nCOPY scripts/*.sh /o/\n", ["scripts/a.sh", "scripts/b.sh"]),
        ("FROM x\nADD [\"data.txt\", \"notes.md\", \"/o/\"]\n", ["data.txt", "notes.md"]),
        ("FROM x\nCOPY --chown=1:1 --chmod=644 data.txt /o/\n", ["data.txt"]),
        ("FROM x\nCOPY --from=builder /a /b\nRUN true\n", []),
        ("FROM x\nADD https://example.invalid/f.tgz /o/\n", []),
        ("FROM x\nRUN echo no copy\n", []),
    ],
)
def test_only_copied_files_count(context: Path, dockerfile: str, expected: list[str]) -> None:
    assert files_for(dockerfile, context) == expected


def test_copy_dot_uses_whole_context_minus_dockerignore(context: Path) -> None:
    (context / ".dockerignore").write_text("# comment\nscripts/sub\n*.md\n")
    got = files_for("FROM x\nCOPY . /o/\n", context)
    assert "scripts/sub/c.py" not in got and "notes.md" not in got
    assert {"scripts/a.sh", "data.txt", "x.py", ".dockerignore"} <= set(got)


def test_arg_and_env_substitution_in_sources(context: Path) -> None:
    text = "FROM x\nARG WHICH\nENV DIR=scripts\nCOPY ${WHICH}.txt $DIR/a.sh /o/\n"
    assert files_for(text, context, {"WHICH": "data"}) == ["data.txt", "scripts/a.sh"]


def key_of(ctx: Path, text: str, args: dict[str, str] | None = None, parent: str = "sha256:p1") -> object:
    return image_key(
        rendered=text, sources={"Dockerfile": "sha256:s"}, context=ctx,
        buildargs=args or {}, parent_id=parent, hasher=FileHasher(None),
    )


def test_key_ignores_unused_files_and_undeclared_args(context: Path) -> None:
    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY scripts/a.sh /o/\n"
    before = key_of(context, text, {"BASE_IMAGE": "a", "USE_FROZEN": "0"})
    (context / "scripts" / "b.sh").write_text("changed")
    after = key_of(context, text, {"BASE_IMAGE": "b", "USE_FROZEN": "1"})
    assert before.digest == after.digest  # type: ignore[attr-defined]


def test_key_tracks_content_mode_args_and_parent(context: Path) -> None:
    text = "FROM x\nARG USE_FROZEN\nCOPY scripts/a.sh /o/\n"
    base = key_of(context, text, {"USE_FROZEN": "0"})
    script = context / "scripts" / "a.sh"
    script.chmod(0o755)
    mode = key_of(context, text, {"USE_FROZEN": "0"})
    script.write_text("new")
    content = key_of(context, text, {"USE_FROZEN": "0"})
    arg = key_of(context, text, {"USE_FROZEN": "1"})
    parent = key_of(context, text, {"USE_FROZEN": "1"}, parent="sha256:p2")
    digests = [k.digest for k in (base, mode, content, arg, parent)]  # type: ignore[attr-defined]
    assert len(set(digests)) == 5
    reasons = explain(arg.parts, parent.parts)  # type: ignore[attr-defined]
    assert reasons == ["parent changed sha256:p1 -> sha256:p2"]
    assert explain(content.parts, arg.parts) == ["build arg USE_FROZEN changed: '0' -> '1'"]  # type: ignore[attr-defined]
    assert explain(mode.parts, content.parts) == ["file scripts/a.sh changed"]  # type: ignore[attr-defined]


def test_explain_without_record_and_for_dockerfile_sources() -> None:
    assert "no record" in explain(None, {})[0]
    old = {"dockerfile": {"rendered": "1", "sources": {"demo/Dockerfile.custom": "a"}}}
    new = {"dockerfile": {"rendered": "2", "sources": {"demo/Dockerfile.custom": "b"}}}
    assert explain(old, new) == ["Dockerfile demo/Dockerfile.custom changed"]
    same_sources = {"dockerfile": {"rendered": "3", "sources": {"demo/Dockerfile.custom": "b"}}}
    assert "rendered Dockerfile changed" in explain(new, same_sources)[0]


def test_cache_mounts_added_to_each_run_once() -> None:
    text = "FROM x\nRUN apt-get update && \\\n    pip install y\nRUN --mount=type=cache,target=/c true\nCOPY a /b\n"
    out = add_cache_mounts(text)
    lines = out.splitlines()
    assert lines[1].startswith("RUN --mount=type=cache,target=/root/.cache/pip")
    assert "/var/cache/apt" in lines[1] and "/root/.npm" in lines[1]
    assert lines[2] == "    pip install y"
    assert lines[3] == "RUN --mount=type=cache,target=/c true"
    assert add_cache_mounts(out) == out

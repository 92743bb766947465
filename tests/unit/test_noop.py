"""The no-op path: what it imports (sys.modules of a real doit subprocess), which engine the small
socket client may answer for, and when the stat memo of a key may be trusted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Project, assert_nothing_ran, doit_env

from pipeline import engine_probe, statmemo
from pipeline.hashing import RACY_NS

REPO = Path(__file__).resolve().parents[2]
# What a no-op must not load: the SDK and HTTP stacks, AWS, the supply-chain libraries, and the
# Dockerfile parser the key model replaced.
FORBIDDEN = ("docker", "requests", "urllib3", "boto3", "botocore", "dockerfile_parse", "cyclonedx", "spdx_tools",
             "securesystemslib")
_WRAPPER = (
    "import atexit, json, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
    "sys.argv = ['doit', *sys.argv[1:]]\n"
    "runpy.run_module('doit', run_name='__main__')\n"
)


def doit_modules(project_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run doit in a subprocess; its result and the modules it had imported when it exited."""
    argv = [sys.executable, "-c", _WRAPPER, "-f", str(REPO / "dodo.py"), "-d", str(project_dir), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, env=doit_env(), timeout=300, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    assert lines, f"no module list (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc, set(json.loads(lines[-1][len("MODULES "):]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_loading_every_task_imports_no_heavy_library() -> None:
    proc, modules = doit_modules(REPO, "list", "--all", "deployment=demo")
    assert proc.returncode == 0, proc.stderr
    assert not top_level(modules) & set(FORBIDDEN), sorted(top_level(modules) & set(FORBIDDEN))


# ...nor, once the memos hold (the second no-op: a file written within git's racy window of the
# build's start is read again once), PyYAML, the Dockerfile model, the context writer, the SDK wrapper
# or tarfile: the configuration comes from yamlmemo, keys and parent checks from the stat memo.
NOT_ON_A_NOOP = ("yaml", "tarfile", "pipeline.yamlparse", "pipeline.dockerfile.parser", "pipeline.dockerfile.analysis",
                 "pipeline.buildctx.collect", "pipeline.buildctx.send", "pipeline.engine.client",
                 "pipeline.stages.images")


@pytest.mark.docker
def test_a_noop_imports_no_heavy_library(built: Project) -> None:
    from helpers import RunResult

    for _ in range(2):
        proc, modules = doit_modules(built.root)
        assert_nothing_ran(RunResult.parse(proc.returncode, proc.stdout + proc.stderr))
        assert not top_level(modules) & set(FORBIDDEN), sorted(top_level(modules) & set(FORBIDDEN))
    assert not modules & set(NOT_ON_A_NOOP), sorted(modules & set(NOT_ON_A_NOOP))


def test_nothing_imports_dockerfile_parse() -> None:
    """The key model (pipeline/dockerfile/) replaced dockerfile-parse; it is no longer a dependency."""
    hits = [p for p in (REPO / "pipeline").rglob("*.py") if "dockerfile_parse" in p.read_text()]
    assert not hits
    assert "dockerfile-parse" not in (REPO / "pyproject.toml").read_text()


# -- which engine the stdlib client may answer for (else the docker SDK does) ------------------------

@pytest.mark.parametrize(("host", "environ", "config", "socket"), [
    (None, {}, None, "/var/run/docker.sock"),
    (None, {"DOCKER_HOST": "unix:///run/other.sock"}, None, "/run/other.sock"),
    (None, {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"}, None, None),
    (None, {"DOCKER_HOST": "ssh://builder@host"}, None, None),
    ("unix:///tmp/engine-b.sock", {"DOCKER_HOST": "tcp://10.0.0.1:2375"}, None, "/tmp/engine-b.sock"),
    ("tcp://127.0.0.1:2375", {}, None, None),
    (None, {"DOCKER_CONTEXT": "remote"}, None, None),
    (None, {"DOCKER_CONTEXT": "default"}, None, "/var/run/docker.sock"),
    (None, {}, {"currentContext": "remote"}, None),
    (None, {}, {"currentContext": "default"}, "/var/run/docker.sock"),
    (None, {}, {"auths": {}}, "/var/run/docker.sock"),
    (None, {"DOCKER_HOST": "unix://relative.sock"}, None, None),
])
def test_the_socket_client_only_answers_for_a_local_socket(
    tmp_path: Path, host: str | None, environ: dict[str, str], config: dict[str, object] | None, socket: str | None,
) -> None:
    env = {"HOME": str(tmp_path / "home"), **environ}
    if config is not None:
        (tmp_path / "home" / ".docker").mkdir(parents=True)
        (tmp_path / "home" / ".docker" / "config.json").write_text(json.dumps(config))
    assert engine_probe.unix_socket(host, env) == socket


@pytest.mark.parametrize(("raw", "status", "body"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 200, b"{}"),
    (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"message\":\"no\"}", 404, b'{"message":"no"}'),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n", 200, b"[1,2]"),
])
def test_http_answers_are_read(raw: bytes, status: int, body: bytes) -> None:
    assert engine_probe._parse_response(raw) == (status, body)


@pytest.mark.parametrize("raw", [b"", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n[1"])
def test_broken_http_answers_are_refused(raw: bytes) -> None:
    with pytest.raises(engine_probe.ProbeError):
        engine_probe._parse_response(raw)


# -- the stat memo: trusted only on an exact match outside the racy window ---------------------------

def _tree(tmp: Path) -> dict[str, Path]:
    ctx = tmp / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "dir" / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM x\n")
    old = time.time() - 10
    for path in (ctx / "dir" / "a.txt", ctx / "Dockerfile", ctx / "dir", ctx):
        os.utime(path, (old, old))
    return {"ctx": ctx, "dir": ctx / "dir", "file": ctx / "dir" / "a.txt", "dockerfile": ctx / "Dockerfile"}


def _remember(memo: statmemo.StatMemo, paths: dict[str, Path], started_ns: int | None = None) -> None:
    """Remember as a computation would that started ``started_ns`` (default: 4 s from now, as the
    ctime of a file just made cannot be set back: only its mtime can)."""
    memo.remember("build:x", "fp", "sha256:key", started_ns=started_ns or time.time_ns() + 2 * RACY_NS,
                  followed=[str(paths["dockerfile"]), str(paths["ctx"]), str(paths["ctx"] / ".dockerignore")],
                  links=[str(paths["dir"]), str(paths["file"])], images={"parent:latest": "sha256:p"})


def _edit_restoring_mtime(paths: dict[str, Path]) -> None:
    st = paths["file"].stat()
    paths["file"].write_text("b\n")
    os.utime(paths["file"], ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(("change", "recalled"), [
    (lambda p: None, True),
    (lambda p: p["file"].write_text("changed\n"), False),
    (_edit_restoring_mtime, False),
    (lambda p: (p["dir"] / "new.txt").write_text("new\n"), False),
    (lambda p: (p["dir"] / "empty").mkdir(), False),
    (lambda p: p["file"].unlink(), False),
    (lambda p: p["file"].chmod(0o755), False),
    (lambda p: (p["ctx"] / ".dockerignore").write_text("dir\n"), False),
    (lambda p: p["dockerfile"].write_text("FROM y\n"), False),
])
def test_the_memo_recalls_a_key_only_while_nothing_changed(tmp_path: Path, change, recalled: bool) -> None:  # type: ignore[no-untyped-def]
    paths = _tree(tmp_path)
    memo = statmemo.StatMemo(tmp_path / "memo.json")
    _remember(memo, paths)
    change(paths)
    fresh = statmemo.StatMemo(tmp_path / "memo.json")  # as the next run reads it
    got = fresh.recall("build:x", "fp", lambda ref: "sha256:p")
    assert got == ("sha256:key" if recalled else None)


@pytest.mark.parametrize(("fingerprint", "parent", "recalled"), [
    ("fp", "sha256:p", True),
    ("other settings", "sha256:p", False),
    ("fp", "sha256:rebuilt", False),
    ("fp", None, False),
])
def test_the_memo_checks_the_fingerprint_and_the_image_ids(
    tmp_path: Path, fingerprint: str, parent: str | None, recalled: bool
) -> None:
    paths = _tree(tmp_path)
    memo = statmemo.StatMemo(tmp_path / "memo.json")
    _remember(memo, paths)
    assert memo.recall("build:x", fingerprint, lambda ref: parent) == ("sha256:key" if recalled else None)


def test_a_path_changed_within_the_racy_window_is_not_remembered(tmp_path: Path) -> None:
    paths = _tree(tmp_path)
    paths["file"].write_text("just written\n")  # mtime: now, within RACY_NS of the computation
    memo = statmemo.StatMemo(tmp_path / "memo.json")
    _remember(memo, paths, started_ns=time.time_ns())
    assert memo.recall("build:x", "fp", lambda ref: "sha256:p") is None
    assert not (tmp_path / "memo.json").exists()
    # …and a computation that started before the change is never trusted either
    _remember(memo, paths, started_ns=paths["file"].stat().st_mtime_ns + RACY_NS // 2)
    assert memo.recall("build:x", "fp", lambda ref: "sha256:p") is None


def test_an_unreadable_memo_only_costs_a_computation(tmp_path: Path) -> None:
    (tmp_path / "memo.json").write_text("{not json")
    assert statmemo.StatMemo(tmp_path / "memo.json").recall("build:x", "fp", lambda ref: None) is None

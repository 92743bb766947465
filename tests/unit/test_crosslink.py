"""The in-image crosslink program's grouping and linking, run directly on a temp dir (no daemon)."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

PROGRAM = Path(__file__).resolve().parents[2] / "deployments" / "common" / "scripts" / "crosslink"


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("crosslink_program", str(PROGRAM))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


cl = load()


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def ino(path: Path) -> int:
    return os.lstat(path).st_ino


def test_identical_files_are_linked_and_counted(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "x.py", b"same" * 100)
    b = write(tmp_path / "b" / "x.py", b"same" * 100)
    c = write(tmp_path / "c" / "y.py", b"same" * 100)
    other = write(tmp_path / "d.py", b"diff" * 100)  # same size, other content
    summary = cl.crosslink([str(tmp_path)])
    assert summary["files_linked"] == 2 and summary["bytes_saved"] == 800 and summary["groups"] == 1
    assert ino(a) == ino(b) == ino(c) != ino(other)
    assert a.read_bytes() == b"same" * 100
    assert not [p for p in tmp_path.rglob("*crosslink-*")], "temporary links left behind"


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"1234567")
    b = write(tmp_path / "b", b"1234567")
    summary = cl.crosslink([str(tmp_path)], dry_run=True)
    assert summary["files_linked"] == 1 and ino(a) != ino(b)


def test_different_mode_is_not_linked(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"content", 0o644)
    b = write(tmp_path / "b", b"content", 0o755)
    assert cl.crosslink([str(tmp_path)])["files_linked"] == 0
    assert ino(a) != ino(b)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_different_owner_is_not_linked(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"content")
    b = write(tmp_path / "b", b"content")
    os.chown(b, 1234, 1234)
    assert cl.crosslink([str(tmp_path)])["files_linked"] == 0
    assert ino(a) != ino(b)


def test_different_xattrs_are_not_linked(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"content")
    b = write(tmp_path / "b", b"content")
    c = write(tmp_path / "c", b"content")
    try:
        os.setxattr(b, "user.tag", b"1")
    except OSError as exc:
        pytest.skip(f"user xattrs unsupported on {tmp_path}: {exc}")
    assert cl.crosslink([str(tmp_path)])["files_linked"] == 1
    assert ino(a) == ino(c) != ino(b)


def test_existing_hard_links_count_once(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"x" * 50)
    os.link(a, tmp_path / "a2")  # already one inode, two names
    b = write(tmp_path / "b", b"x" * 50)
    items = cl.inodes([str(tmp_path)])
    assert len(items) == 2
    summary = cl.crosslink([str(tmp_path)])
    # the inode with two links is kept; only b is replaced
    assert summary["files_linked"] == 1 and summary["bytes_saved"] == 50
    assert ino(a) == ino(tmp_path / "a2") == ino(b)


def test_overlapping_roots_count_once(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "a", b"abc")
    write(tmp_path / "sub" / "b", b"abc")
    summary = cl.crosslink([str(tmp_path), str(tmp_path / "sub")])
    assert summary["files"] == 2 and summary["files_linked"] == 1


def test_symlinks_are_untouched(tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"data")
    (tmp_path / "link").symlink_to("a")
    (tmp_path / "dirlink").symlink_to(tmp_path)  # never followed: no loop
    summary = cl.crosslink([str(tmp_path)])
    assert summary["files"] == 1 and summary["files_linked"] == 0
    assert os.readlink(tmp_path / "link") == "a" and a.read_bytes() == b"data"


def test_empty_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a", b"")
    write(tmp_path / "b", b"")
    assert cl.crosslink([str(tmp_path)])["files_linked"] == 0


def test_unique_sizes_are_never_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        write(tmp_path / f"f{i}", b"x" * (i + 1))
    write(tmp_path / "dup1", b"y" * 100)
    write(tmp_path / "dup2", b"z" * 100)  # same size, other content: hashed, not linked
    hashed: list[str] = []
    real = cl.sha256
    monkeypatch.setattr(cl, "sha256", lambda p: hashed.append(os.path.basename(p)) or real(p))
    assert cl.crosslink([str(tmp_path)])["files_linked"] == 0
    assert sorted(hashed) == ["dup1", "dup2"]


def test_listing_ignores_hard_link_structure(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for top in (one, two):
        write(top / "a", b"same")
        (top / "l").symlink_to("a")
    write(one / "b", b"same")
    os.link(two / "a", two / "b")
    def strip(top):
        return sorted(line.replace(str(top), "") for line in cl.listing(str(top), ()))
    assert strip(one) == strip(two)
    write(two / "c", b"new")
    assert strip(one) != strip(two)


def test_expand_keeps_existing_directories_only(tmp_path: Path) -> None:
    (tmp_path / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    found = cl.expand([str(tmp_path / "lib" / "python3*" / "site-packages"), str(tmp_path / "missing")])
    assert found == [str(tmp_path / "lib" / "python3.11" / "site-packages")]

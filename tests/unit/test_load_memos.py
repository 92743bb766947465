"""What a doit start skips when nothing changed: the YAML parse (yamlmemo) and the parent check (parents).

Each memo is trusted only under the stat rule of pipeline/hashing.py; these rows hold it
to that: an edit of any kind is parsed or checked again, and what JSON cannot carry is
never kept.  RACY_NS is set to 0 so that files written by the test count as old.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config, parents, statmemo, yamlmemo
from pipeline.errors import ConfigError
from pipeline.yamlparse import load_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlmemo, "RACY_NS", 0)
    monkeypatch.setattr(statmemo, "RACY_NS", 0)


def parse_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    parsed: list[Path] = []

    def counting(path: Path) -> object:
        parsed.append(path)
        return load_yaml(path)

    monkeypatch.setattr(yamlmemo, "parse_file", counting)
    return parsed


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("a: 1\nb: [x, 2, 3.5, true, null]\n", True),
        ("nested:\n  deeper:\n    key: value\n", True),
        ("1: int key\nfalse: bool key\n2.5: float key\n~: null key\n", True),
        ("expires: 2027-01-31\n", True),
        ("at: 2027-01-31T10:00:00+02:00\nnaive: 2027-01-31 10:00:00.5\n", True),
        ("base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n", True),
        ("empty:\n", True),
        ("", True),
        ("s: !!set {a, b}\n", False),
        ("blob: !!binary aGVsbG8=\n", False),
        ("nan: .nan\n", False),
    ],
    ids=["scalars", "nested", "key-types", "date", "datetimes", "merge", "empty-value", "empty-file", "set",
         "binary", "nan"],
)
def test_a_remembered_document_is_the_parsed_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                                 kept: bool) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    parsed = parse_counter(monkeypatch)
    memo_file = tmp_path / "memo.json"
    first = yamlmemo.YamlMemo(memo_file)
    data = first.load(path)
    first.save()
    again = yamlmemo.YamlMemo(memo_file).load(path)
    assert len(parsed) == (1 if kept else 2)
    if kept:
        assert again == data and type(again) is type(data)
        assert repr(again) == repr(data)  # key types, float vs int, tz offsets
        if isinstance(data, dict):
            assert getattr(again, "lines", None) == getattr(data, "lines", None)


def edit_same_size_restoring_mtime(path: Path) -> None:
    st = path.stat()
    text = path.read_text()
    path.write_text(text.replace("1", "2"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    ("edit", "reparsed"),
    [
        (lambda p: None, False),
        (lambda p: p.write_text("a: 1\nb: 3\n"), True),
        (edit_same_size_restoring_mtime, True),
        (lambda p: p.chmod(0o600), True),
        (lambda p: (p.unlink(), p.write_text("a: 1\nb: 2\n")), True),
    ],
    ids=["unchanged", "edited", "mtime-restored", "mode", "replaced"],
)
def test_any_change_parses_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit, reparsed: bool) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\nb: 2\n")
    parsed = parse_counter(monkeypatch)
    memo = yamlmemo.YamlMemo(tmp_path / "memo.json")
    memo.load(path)
    memo.save()
    edit(path)
    data = yamlmemo.YamlMemo(tmp_path / "memo.json").load(path)
    assert len(parsed) == (2 if reparsed else 1)
    assert data == load_yaml(path)


def test_a_recent_file_is_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlmemo, "RACY_NS", 10**18)
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\n")
    memo = yamlmemo.YamlMemo(tmp_path / "memo.json")
    memo.load(path)
    memo.save()
    assert not (tmp_path / "memo.json").exists()


def test_a_syntax_error_is_reported_and_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: [1\n")
    memo = yamlmemo.YamlMemo(tmp_path / "memo.json")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"f.yaml:\d+: YAML syntax error"):
            memo.load(path)


def test_a_corrupt_memo_costs_a_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\n")
    (tmp_path / "memo.json").write_text("{not json")
    parsed = parse_counter(monkeypatch)
    assert yamlmemo.YamlMemo(tmp_path / "memo.json").load(path) == {"a": 1}
    assert len(parsed) == 1


PIPELINE = """\
namespace: unit
root: {rootfs: root.tar}
chain:
  - {name: stack, dockerfile: stack/Dockerfile, context: stack}
registry: {kind: generic, host: 127.0.0.1:5000}
"""
GOOD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


def project(tmp_path: Path) -> Path:
    base = tmp_path / "deployments"
    (base / "stack").mkdir(parents=True)
    (base / "root.tar").write_bytes(b"")
    (base / "pipeline.yaml").write_text(PIPELINE)
    (base / "stack" / "Dockerfile").write_text(GOOD)
    return base


def test_config_errors_stay_live_with_the_memo(tmp_path: Path) -> None:
    """Only the parse is remembered: validation (here, a file the config names) runs on every load."""
    base = project(tmp_path)
    config.load(base)
    (base / "root.tar").unlink()
    with pytest.raises(ConfigError, match="root.tar"):
        config.load(base)


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        (lambda p: None, False),
        (lambda p: p.write_text("FROM ubuntu:jammy\n"), True),
        (lambda p: (p.write_text("FROM ubuntu:jammy0000000000000000\n"), os.utime(p, ns=(0, 0))), True),
    ],
    ids=["unchanged", "edited", "same-size-old-mtime"],
)
def test_the_parent_check_runs_again_after_any_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit,
                                                    refused: bool) -> None:
    base = project(tmp_path)
    dockerfile = base / "stack" / "Dockerfile"
    assert len("FROM ubuntu:jammy0000000000000000\n") == len(GOOD)
    parents.check_parents(config.load(base))
    checked: list[str] = []
    real = parents.check_parent
    monkeypatch.setattr(parents, "check_parent", lambda s, spec, text: (checked.append(spec.task), real(s, spec, text)))
    edit(dockerfile)
    if refused:
        with pytest.raises(ConfigError, match=r"Dockerfile:1: the final stage's `FROM ubuntu:jammy"):
            parents.check_parents(config.load(base))
    else:
        parents.check_parents(config.load(base))
        assert checked == []  # remembered: not parsed again


def test_quick_exit_only_for_the_doit_command(tmp_path: Path) -> None:
    from pipeline import quick_exit

    assert not quick_exit.is_doit_command()  # pytest's own process keeps its collector
    (tmp_path / "dodo.py").write_text(
        "from pipeline import quick_exit\n"
        "def task_probe():\n"
        "    return {'actions': [lambda: print('COMMAND', quick_exit.is_doit_command())], 'verbosity': 2}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "doit", "-f", str(tmp_path / "dodo.py"), "--db-file",
                          str(tmp_path / ".doit.db"), "probe"], capture_output=True, text=True, env=env, check=True)
    assert "COMMAND True" in out.stdout

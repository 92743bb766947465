"""Keys given twice: every YAML file the pipeline reads refuses them, naming the file, both lines and the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import yamlparse
from pipeline.errors import ConfigError, PipelineError
from pipeline.findings.policy import load_ignores
from pipeline.stages.secrets import _check_yaml
from pipeline.stages.sscan.yaml_files import _yaml_problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("namespace: a\nenvironment: sandbox\nnamespace: b\n",
         "x.yaml:3: key 'namespace' is given twice (lines 1 and 3); keep one"),
        ("registry:\n  host: a\n  kind: generic\n  host: b\n", "x.yaml:4: key 'host' is given twice (lines 2 and 4)"),
        ("chain:\n  - {name: a, name: b}\n", "x.yaml:2: key 'name' is given twice on line 2"),
        ("- id: CVE-1\n  reason: r\n  id: CVE-2\n", "x.yaml:3: key 'id' is given twice (lines 1 and 3)"),
        ("1: a\n1: b\n", "x.yaml:2: key 1 is given twice (lines 1 and 2)"),
    ],
)
def test_a_key_given_twice_is_an_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        yamlparse.load_yaml(path)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\n", {"a": 1, "b": 2}),
        ("a: {x: 1}\nb: {x: 2}\n", {"a": {"x": 1}, "b": {"x": 2}}),  # the same key in two mappings
        ("base: &b {x: 1, y: 1}\nother:\n  <<: *b\n  x: 2\n", {"base": {"x": 1, "y": 1}, "other": {"x": 2, "y": 1}}),
    ],
)
def test_distinct_keys_and_merge_overrides_load(tmp_path: Path, text: str, expected: dict) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert yamlparse.load_yaml(path) == expected


def test_ignore_file_with_a_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "ignore.yaml"
    path.write_text("- id: CVE-1\n  reason: fine\n  expires: 2027-01-01\n  expires: 2099-01-01\n")
    with pytest.raises(ConfigError, match=r"ignore.yaml:4: key 'expires' is given twice \(lines 3 and 4\)"):
        load_ignores(path)


def test_sscan_yaml_reports_a_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("ok: 1\n---\nimage: a\nimage: b\n")
    problem = _yaml_problem(path)
    assert problem is not None and "values.yaml:4: key 'image' is given twice (lines 3 and 4)" in problem
    path.write_text("a: 1\n---\na: 2\n")  # the same key in two documents is fine
    assert _yaml_problem(path) is None


def test_edited_secrets_with_a_key_given_twice_are_not_saved(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        _check_yaml(b"db_password: old\ntoken: t\ndb_password: new\n", tmp_path / "sandbox.yaml")
    message = str(info.value)
    assert "gives a key twice (lines 1 and 3); nothing was saved" in message
    assert "db_password" not in message and "new" not in message  # no word of the secrets file in the message

"""Error messages: the boundary names the task once; hints name only options the task has."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.stages import patch
from pipeline.tasks.boundary import with_task


@pytest.mark.parametrize(
    ("task", "message", "expected"),
    [
        ("release", "on branch 'x'", "release: on branch 'x'"),
        ("release", "release: on branch 'x'", "release: on branch 'x'"),  # never `release: release: …`
        ("delete:fx1", "delete:fx1: give the tags", "delete:fx1: give the tags"),
        ("build:fx1", "build:fx10: other", "build:fx1: build:fx10: other"),  # another task's name is kept
        ("patch_os:a", "patch:a: x", "patch_os:a: patch:a: x"),
    ],
)
def test_the_boundary_names_the_task_once(task: str, message: str, expected: str) -> None:
    assert with_task(task, message) == expected


def _settings(tmp_path: Path) -> config.Settings:
    files = {
        "deployments/pipeline.yaml": "root: {image: scratch}\n",
        "deployments/alpha/deployment.yaml": "repo: alpha\n",
        "deployments/alpha/Dockerfile.custom": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return config.load(tmp_path / "deployments", None, tmp_path / "build")


def test_patch_os_without_its_script_names_no_option_it_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patch, "PROGRAMS", tmp_path / "nowhere")
    with pytest.raises(ConfigError) as info:
        patch.patch_os(_settings(tmp_path), None, "alpha", "ops")  # type: ignore[arg-type]  # fails before the engine
    message = str(info.value)
    assert "apt-upgrade" in message and "put the OS-upgrade script at" in message, message
    assert "with --script" not in message and not message.startswith("patch"), message


def test_patch_without_its_script_says_give_one_with_script(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        patch.patch_image(_settings(tmp_path), None, "alpha", tmp_path / "missing.sh", "me", "fix")  # type: ignore[arg-type]
    assert "missing.sh" in str(info.value) and "give an existing file with --script" in str(info.value)

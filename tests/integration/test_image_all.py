"""The whole publishing flow: image_all (build -> test -> push -> promote) and release
(registry-side release tag + annotated git tag), against a real registry."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import (
    BUILD_TAG,
    DEPLOYMENTS,
    PROMOTED_TAG,
    Project,
    RunResult,
    assert_clean_failure,
    assert_ok,
    repo_of,
    summary_rows,
    use_generic_registry,
)
from services import LocalRegistry

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_config")]

STAGES = ("build", "test", "push", "promote")
RELEASE = "v1.2.3"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Pipeline Tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
                "GIT_COMMITTER_NAME": "Pipeline Tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}
# The pipeline's own outputs (as in the repository's .gitignore): not part of the checkout.
GITIGNORE = "build/\n.doit.db*\n.pipeline.lock\ndeployments/common/tls-ca-bundle.pem\n"


@pytest.fixture
def on_registry(project: Project, registry: LocalRegistry) -> Project:
    use_generic_registry(project, registry.host)
    return project


def stage_results(result: RunResult, deployment: str) -> dict[str, str]:
    rows = summary_rows(result.output)
    return {stage: rows.get(f"{stage}:{deployment}", "absent") for stage in STAGES}


# --------------------------------------------------------------------------
# image_all
# --------------------------------------------------------------------------
def test_image_all_runs_every_stage_then_nothing(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    first = project.run("image_all:alpha")
    assert_ok(first)
    assert stage_results(first, "alpha") == dict.fromkeys(STAGES, "ran"), str(first)
    assert "build:beta" not in summary_rows(first.output), str(first)
    digest = registry.digest(repo, BUILD_TAG)
    assert digest and registry.digest(repo, PROMOTED_TAG) == digest

    second = project.run("image_all:alpha")
    assert_ok(second)
    assert stage_results(second, "alpha") == dict.fromkeys(STAGES, "up to date"), str(second)
    assert not second.ran & {f"{s}:alpha" for s in STAGES}, str(second)


def test_image_all_covers_every_deployment(registry: LocalRegistry, on_registry: Project) -> None:
    result = on_registry.run("image_all")
    assert_ok(result)
    for dep in DEPLOYMENTS:
        assert stage_results(result, dep) == dict.fromkeys(STAGES, "ran"), str(result)
        repo = repo_of(on_registry, dep)
        assert registry.digest(repo, PROMOTED_TAG) == registry.digest(repo, BUILD_TAG) is not None


def test_image_all_stops_at_a_failing_test(registry: LocalRegistry, on_registry: Project) -> None:
    project = on_registry
    project.write("alpha/environments/test", "#!/bin/sh\necho 'smoke test broke' >&2\nexit 1\n", executable=True)
    result = project.run("image_all:alpha")
    assert_clean_failure(result)
    stages = stage_results(result, "alpha")
    assert stages["build"] == "ran" and stages["test"] == "FAILED", str(result)
    assert stages["push"] not in ("ran", "up to date") and stages["promote"] not in ("ran", "up to date"), str(result)
    assert registry.tags(repo_of(project, "alpha")) == []


# --------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(on_registry: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The project as a git checkout on `main`, which tracks a local bare repository,
    everything committed and pushed."""
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = on_registry.root
    (root / ".gitignore").write_text(GITIGNORE)
    upstream = root.parent / "upstream.git"
    git(root.parent, "init", "-q", "--bare", "-b", "main", str(upstream))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fixture project")
    git(root, "remote", "add", "origin", str(upstream))
    git(root, "push", "-q", "-u", "origin", "main")
    return on_registry


def assert_no_release(project: Project, registry: LocalRegistry) -> None:
    assert git(project.root, "tag", "-l", RELEASE) == "", "a git tag was created"
    for dep in DEPLOYMENTS:
        assert RELEASE not in registry.tags(repo_of(project, dep)), f"{dep} got the release tag"


def test_release_tags_the_promoted_images_and_the_commit(registry: LocalRegistry, checkout: Project) -> None:
    project = checkout
    assert_ok(project.run("image_all"))
    result = project.run("release", "--", RELEASE)
    assert_ok(result)
    for dep in DEPLOYMENTS:
        repo = repo_of(project, dep)
        promoted = registry.digest(repo, PROMOTED_TAG)
        assert promoted and registry.digest(repo, RELEASE) == promoted, (dep, registry.tags(repo))
    assert git(project.root, "cat-file", "-t", RELEASE) == "tag", "the git tag is not annotated"
    assert git(project.root, "rev-parse", f"{RELEASE}^{{commit}}") == git(project.root, "rev-parse", "HEAD")
    assert git(project.root, "status", "--porcelain") == "", "release left the checkout dirty"


def test_release_refuses_off_the_main_branch(registry: LocalRegistry, checkout: Project) -> None:
    project = checkout
    git(project.root, "switch", "-q", "-c", "feature")
    result = project.run("release", "--", RELEASE)
    assert_clean_failure(result, "ERROR: release: on branch 'feature', releases come from 'main'")
    assert_no_release(project, registry)


def test_release_refuses_a_checkout_ahead_of_its_upstream(registry: LocalRegistry, checkout: Project) -> None:
    project = checkout
    project.append("common/README.txt", "Not pushed yet.\n")
    git(project.root, "commit", "-q", "-am", "local only")
    result = project.run("release", "--", RELEASE)
    assert_clean_failure(result)
    assert_no_release(project, registry)


def test_release_refuses_uncommitted_changes(registry: LocalRegistry, checkout: Project) -> None:
    project = checkout
    project.append("common/README.txt", "Uncommitted.\n")
    result = project.run("release", "--", RELEASE)
    assert_clean_failure(result)
    assert_no_release(project, registry)

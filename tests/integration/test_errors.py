"""Failures: bad configuration, unreachable daemon, a failing build, a missing
root image. Each must end with rc != 0, a readable message and no traceback."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from helpers import (
    Project,
    assert_clean_failure,
    custom_dockerfile,
    image_id,
    namespace_images,
)

pytestmark = pytest.mark.docker

# A config mutation, returning the substrings the error message must contain.
Breakage = Callable[[Project], tuple[str, ...]]


def assert_nothing_built(client: docker.DockerClient, project: Project) -> None:
    assert namespace_images(client, project.ns) == [], "an image was built despite the error"


def _set(**changes: object) -> Callable[[dict[str, object]], None]:
    return lambda config: config.update(changes)


def unknown_pipeline_key(p: Project) -> tuple[str, ...]:
    p.update_yaml("pipeline.yaml", _set(bogus=1))
    return "pipeline.yaml", "bogus"


def unknown_deployment_key(p: Project) -> tuple[str, ...]:
    p.update_yaml("alpha/deployment.yaml", _set(bogus=1))
    return "deployment.yaml", "bogus"


def missing_chain_dockerfile(p: Project) -> tuple[str, ...]:
    p.update_yaml("pipeline.yaml", lambda c: c["chain"][1].update(dockerfile="common/Dockerfile.missing"))
    return "pipeline.yaml", "Dockerfile.missing"


def two_root_kinds(p: Project) -> tuple[str, ...]:
    p.update_yaml("pipeline.yaml", _set(root={"image": "x", "rootfs": str(p.rootfs)}))
    return "pipeline.yaml", "root"


def unknown_environment(p: Project) -> tuple[str, ...]:
    p.update_yaml("pipeline.yaml", _set(environment="staging"))
    return "pipeline.yaml", "environment", "staging"


def namespace_given_twice(p: Project) -> tuple[str, ...]:
    lines = p.read("pipeline.yaml").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("namespace:")) + 1
    p.write("pipeline.yaml", p.read("pipeline.yaml") + "namespace: shared\n")  # PyYAML alone keeps this one
    return "pipeline.yaml", f"key 'namespace' is given twice (lines {first} and {len(lines) + 1})"


def deployment_key_given_twice(p: Project) -> tuple[str, ...]:
    p.append("alpha/deployment.yaml", "repo: other\n")
    return "alpha/deployment.yaml:3:", "key 'repo' is given twice (lines 1 and 3)"


@pytest.mark.parametrize("breakage", [unknown_pipeline_key, unknown_deployment_key, missing_chain_dockerfile,
                                      two_root_kinds, unknown_environment, namespace_given_twice,
                                      deployment_key_given_twice], ids=lambda f: f.__name__)
def test_bad_config_is_reported(docker_client: docker.DockerClient, project: Project, breakage: Breakage) -> None:
    needles = breakage(project)
    result = project.run()
    assert_clean_failure(result, *needles)
    assert result.rc == 3, result  # a configuration error, like every other one
    assert_nothing_built(docker_client, project)


@pytest.mark.parametrize("rel", ["pipeline.yaml", "alpha/deployment.yaml"])
def test_yaml_syntax_error_names_file_and_line(docker_client: docker.DockerClient, project: Project,
                                               rel: str) -> None:
    lines = project.read(rel).splitlines()
    lines.insert(1, "broken: value: here")  # "mapping values are not allowed here", on line 2
    project.write(rel, "\n".join(lines) + "\n")
    result = project.run()
    assert_clean_failure(result, Path(rel).name)
    assert re.search(r"(line\s*2\b|:2\b)", result.output, re.IGNORECASE), f"line 2 not named\n{result}"
    assert_nothing_built(docker_client, project)


def test_unknown_deployment_selected(docker_client: docker.DockerClient, project: Project) -> None:
    assert_clean_failure(project.run("deployment=nosuch"), "nosuch")
    assert_nothing_built(docker_client, project)


def test_unreachable_daemon(docker_client: docker.DockerClient, project: Project) -> None:
    assert not Path("/tmp/nowhere.sock").exists()  # nosec B108 - a path that must not exist
    result = project.run(env={"DOCKER_HOST": "unix:///tmp/nowhere.sock"})
    assert_clean_failure(result, "nowhere.sock")
    assert_nothing_built(docker_client, project)


def test_failing_build_keeps_previous_tag(docker_client: docker.DockerClient, built: Project) -> None:
    before = {d: image_id(docker_client, built.mission_tag(d)) for d in ("alpha", "beta")}
    built.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", "RUN echo boom-marker && exit 3"))
    result = built.run()
    assert_clean_failure(result, "boom-marker")
    assert "build:alpha" in result.ran, result
    assert {d: image_id(docker_client, built.mission_tag(d)) for d in ("alpha", "beta")} == before
    assert "boom-marker" in built.build_log("build:alpha").read_text()
    # the failure is not remembered as success
    assert_clean_failure(built.run(), "boom-marker")


def test_missing_root_image(docker_client: docker.DockerClient, project: Project) -> None:
    image = "nosuch.invalid/x:y"
    project.update_yaml("pipeline.yaml", _set(root={"image": image}))
    result = project.run()
    assert_clean_failure(result, image)
    assert_nothing_built(docker_client, project)

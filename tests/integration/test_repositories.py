"""A repository in the old scripts' layout builds unmodified (issue 17).

The fixture (made-up content, busybox-based):

    docker-stacks/base/Dockerfile        ARG BASE_CONTAINER=…, FROM $BASE_CONTAINER   (outside deployments/)
    docker-stacks/minimal/Dockerfile     the same, two layers in docker-stacks style
    deployments/common/image/            Dockerfile.certs (FROM $ROOT_CONTAINER, build args), Dockerfile,
                                         Dockerfile.trailer, common-scripts/, common-env/
    deployments/m1|m2/deployment.yaml    context: image
    deployments/m1|m2/image/             Dockerfile.custom, environments/, env-frozen/, env-chilly/
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml
from helpers import (
    CA_BUNDLE,
    REGISTRY,
    REPO,
    Project,
    assert_clean_failure,
    assert_image_stages,
    assert_nothing_ran,
    assert_ok,
    doit_env,
    fake_pem,
    run_in_image,
)

pytestmark = pytest.mark.docker

MISSIONS = ("m1", "m2")
CHAIN = ("certs", "base", "minimal", "common")
ALL_IMAGES = {"root", *(f"chain:{c}" for c in CHAIN), *(f"build:{m}" for m in MISSIONS)}

STACK_BASE = """\
ARG REGISTRY=quay.io
ARG OWNER=jupyter
ARG BASE_CONTAINER=$REGISTRY/$OWNER/docker-stacks-foundation
FROM $BASE_CONTAINER
ARG NB_USER=jovyan
RUN echo "base $NB_USER" > /stack-base
"""
STACK_MINIMAL = """\
ARG BASE_CONTAINER=quay.io/jupyter/base-notebook
FROM $BASE_CONTAINER
COPY start.sh /usr/local/bin/start.sh
RUN echo minimal > /stack-minimal
"""
CERTS = """\
ARG ROOT_CONTAINER=ubuntu:jammy
FROM $ROOT_CONTAINER
ARG PIP_SWITCHES=""
ARG CLEAR_PKG_CACHES=0
ARG CONDA_VER=latest
COPY tls-ca-bundle.pem /etc/ssl/bundle.pem
RUN echo "$PIP_SWITCHES|$CLEAR_PKG_CACHES|$CONDA_VER" > /certs-args
"""
COMMON = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY common-scripts/ /opt/common-scripts/
COPY common-env/ /opt/common-env/
"""
TRAILER = """\
ARG USE_FROZEN=0
ARG FROZEN_SPECS=environments
COPY environments/ /opt/environments/
COPY ${FROZEN_SPECS}/ /opt/env-frozen/
RUN echo "$USE_FROZEN" > /use-frozen
"""


def pipeline_yaml(ns: str, rootfs: Path) -> dict:
    return {
        "namespace": ns,
        "root": {"rootfs": str(rootfs)},
        "certs": {"source": CA_BUNDLE, "target": "common/image/tls-ca-bundle.pem"},
        "chain": [
            {"name": "certs", "dockerfile": "common/image/Dockerfile.certs", "context": "common/image",
             "base_arg": "ROOT_CONTAINER",
             "build_args": {"PIP_SWITCHES": "--no-cache-dir", "CLEAR_PKG_CACHES": 1, "CONDA_VER": "24.1"}},
            {"name": "base", "dockerfile": "../docker-stacks/base/Dockerfile", "context": "../docker-stacks/base",
             "base_arg": "BASE_CONTAINER", "build_args": {"NB_USER": "tester"}},
            {"name": "minimal", "dockerfile": "../docker-stacks/minimal/Dockerfile",
             "context": "../docker-stacks/minimal", "base_arg": "BASE_CONTAINER"},
            {"name": "common", "dockerfile": "common/image/Dockerfile", "context": "common/image",
             "tags": [f"{ns}/notebook-common:latest"]},
        ],
        "trailer": "common/image/Dockerfile.trailer",
        "registry": {"kind": "generic", "host": REGISTRY},
    }


def mission_files(name: str, ns: str) -> dict[str, str]:
    deployment = {"repo": f"{ns}-{name}", "context": "image",
                  "tags": {"extra": ["{environment}-{key}", f"{ns}/notebook-{name}:latest"]}}
    return {
        f"{name}/deployment.yaml": yaml.safe_dump(deployment, sort_keys=False),
        f"{name}/image/Dockerfile.custom": f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {name} > /name\n",
        f"{name}/image/environments/test": f"#!/bin/sh\nset -e\ntest \"$(cat /name)\" = {name}\necho {name} ok\n",
        f"{name}/image/environments/env1/requirements.txt": "numpy\nscipy\n",
        f"{name}/image/env-chilly/env1/requirements.txt": "numpy>=1.26,<2\nscipy\n",
        f"{name}/image/env-frozen/env1/requirements.txt": "numpy==1.26.4\nscipy==1.13.0\n",
    }


@pytest.fixture
def repo(tmp_path: Path, namespace: str, rootfs_tar: Path) -> Project:
    project = Project(root=tmp_path / "project", ns=namespace, rootfs=rootfs_tar)
    files = {
        "pipeline.yaml": yaml.safe_dump(pipeline_yaml(namespace, rootfs_tar), sort_keys=False),
        CA_BUNDLE: fake_pem(),
        "common/image/Dockerfile.certs": CERTS,
        "common/image/Dockerfile": COMMON,
        "common/image/Dockerfile.trailer": TRAILER,
        "common/image/common-scripts/hello": "#!/bin/sh\necho hello\n",
        "common/image/common-env/common.yml": "name: common\n",
        "../docker-stacks/base/Dockerfile": STACK_BASE,
        "../docker-stacks/minimal/Dockerfile": STACK_MINIMAL,
        "../docker-stacks/minimal/start.sh": "#!/bin/sh\nexec \"$@\"\n",
    }
    for name in MISSIONS:
        files.update(mission_files(name, namespace))
    for rel, text in files.items():
        project.write(rel, text, executable=rel.endswith(("/test", ".sh", "/hello")))
    return project


def image_id(client: docker.DockerClient, ref: str) -> str:
    return client.images.get(ref).id


def test_builds_noop_one_mission_edit_and_extra_tags(docker_client: docker.DockerClient, repo: Project) -> None:
    first = repo.run()
    assert_image_stages(first, ALL_IMAGES)
    ns = repo.ns
    # chain build args reach the certs layer; the docker-stacks layers built FROM their parents
    assert run_in_image(docker_client, repo.local_image("certs"), "cat /certs-args") == "--no-cache-dir|1|24.1\n"
    mission = repo.mission_tag("m1")
    assert run_in_image(docker_client, mission, "cat /stack-base /stack-minimal /name") == "base tester\nminimal\nm1\n"
    assert run_in_image(docker_client, mission, "ls /opt/common-scripts /opt/common-env") \
        == "/opt/common-env:\ncommon.yml\n\n/opt/common-scripts:\nhello\n"
    # floating: the trailer copied environments/, never the pins
    assert run_in_image(docker_client, mission, "cat /use-frozen /opt/env-frozen/env1/requirements.txt") \
        == "0\nnumpy\nscipy\n"
    # extra tags, applied locally at build time
    assert image_id(docker_client, f"{ns}/notebook-common:latest") == image_id(docker_client, repo.local_image("common"))
    for name in MISSIONS:
        built = docker_client.images.get(repo.mission_tag(name))
        key = built.labels["pipeline.inputs"].removeprefix("sha256:")[:12]
        assert image_id(docker_client, f"{REGISTRY}/{ns}-{name}:sandbox-{key}") == built.id
        assert image_id(docker_client, f"{ns}/notebook-{name}:latest") == built.id

    assert_nothing_ran(repo.run())

    # an edit inside one mission's image/ rebuilds that mission only
    others = {name: image_id(docker_client, repo.mission_tag(name)) for name in MISSIONS}
    repo.append("m1/image/environments/env1/requirements.txt", "pandas\n")
    edited = repo.run()
    assert_image_stages(edited, {"build:m1"})
    assert image_id(docker_client, repo.mission_tag("m2")) == others["m2"]
    assert image_id(docker_client, f"{ns}/notebook-m1:latest") == image_id(docker_client, repo.mission_tag("m1"))

    # a new extra tag is a retag: the stage runs, nothing is built
    repo.update_yaml("m2/deployment.yaml", lambda d: d["tags"]["extra"].append("{environment}-extra"))
    info = repo.info("build:m2")
    assert "extra tag" in info.output and "no rebuild" in info.output, info
    retag = repo.run("deployment=m2")
    assert_ok(retag)
    assert "build:m2" in retag.ran and "already carries the current inputs; not building" in retag.output, retag
    assert image_id(docker_client, f"{REGISTRY}/{ns}-m2:sandbox-extra") == others["m2"]
    assert image_id(docker_client, repo.mission_tag("m2")) == others["m2"]
    assert_nothing_ran(repo.run("deployment=m2"))


def test_pin_levels_read_and_write_their_folders(docker_client: docker.DockerClient, repo: Project) -> None:
    assert_ok(repo.run("deployment=m1"))
    mission = repo.mission_tag("m1")
    cat = "cat /use-frozen /opt/env-frozen/env1/requirements.txt"
    # chilly (USE_FROZEN=2): the build reads env-chilly/, and freeze writes what it resolved to env-frozen/
    chilly = repo.run("deployment=m1", "frozen=chilly")
    assert_image_stages(chilly, {"build:m1"})
    assert run_in_image(docker_client, mission, cat) == "2\nnumpy>=1.26,<2\nscipy\n"
    frozen_before = repo.read("m1/image/env-frozen/env1/requirements.txt")
    freeze = repo.run("deployment=m1", "frozen=2", "freeze:m1")
    assert_ok(freeze)
    assert repo.read("m1/image/env-frozen/env1/requirements.txt") == "numpy>=1.26,<2\nscipy\n" != frozen_before
    assert "chilly" in freeze.output, freeze
    # a freeze never makes a chilly build stale: it does not read env-frozen/
    assert_nothing_ran(repo.run("deployment=m1", "frozen=chilly", "build:m1"))
    # frozen (USE_FROZEN=1, the old `frozen: true`): the build reads env-frozen/, freeze writes nothing
    repo.update_yaml("pipeline.yaml", lambda c: c.update(frozen=True))
    frozen = repo.run("deployment=m1")
    assert_image_stages(frozen, {"build:m1"})
    assert run_in_image(docker_client, mission, cat) == "1\nnumpy>=1.26,<2\nscipy\n"
    # and `frozen: chilly` in the file is the same level as frozen=chilly
    repo.update_yaml("pipeline.yaml", lambda c: c.update(frozen="chilly"))
    again = repo.run("deployment=m1")
    assert_image_stages(again, {"build:m1"})
    assert run_in_image(docker_client, mission, "cat /use-frozen") == "2\n"


@pytest.mark.parametrize(
    ("dockerfile", "entry", "needles"),
    [
        # a docker-stacks Dockerfile whose chain entry forgot base_arg: it would build FROM its default
        (STACK_MINIMAL, {}, ("docker-stacks/minimal/Dockerfile:2", "`FROM $BASE_CONTAINER` resolves to "
                             "'quay.io/jupyter/base-notebook'", "set `base_arg: BASE_CONTAINER` on chain[2]")),
        # a literal FROM ignores the parent whatever the config says
        ("FROM busybox:latest\nRUN true\n", {"base_arg": "BASE_CONTAINER"},
         ("docker-stacks/minimal/Dockerfile:1", "resolves to 'busybox:latest'", "`ARG BASE_CONTAINER`")),
        # a FROM through an ARG nobody declared
        ("FROM ${PARENT}\n", {"base_arg": "BASE_CONTAINER"},
         ("docker-stacks/minimal/Dockerfile:1", "resolves to ''", "set `base_arg: PARENT` on chain[2]")),
    ],
    ids=["arg-default", "literal", "undeclared-arg"],
)
def test_a_from_that_ignores_the_parent_is_refused_before_any_build(
        docker_client: docker.DockerClient, repo: Project, dockerfile: str, entry: dict, needles: tuple[str, ...]) -> None:
    repo.write("../docker-stacks/minimal/Dockerfile", dockerfile)

    def edit(config: dict) -> None:
        layer = config["chain"][2]
        layer.pop("base_arg", None)
        layer.update(entry)

    repo.update_yaml("pipeline.yaml", edit)
    result = repo.run()
    assert_clean_failure(result, *needles, "not the parent")
    assert result.rc == 3, result
    made = [i for i in docker_client.api.images(filters={"label": f"pipeline.namespace={repo.ns}"})]
    assert made == [], "an image was built before the refusal"


PREPARE = '''\
"""The pipeline's tasks, plus this repository's own preparation step."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("pipeline_dodo", {dodo!r})
_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pipeline)
globals().update({{k: v for k, v in vars(_pipeline).items() if k.startswith("task_") or k == "DOIT_CONFIG"}})


def task_calibrate():
    """Write m2's requirements from its calibration version (reruns only when that file changes)."""
    source = "deployments/m2/calibration.txt"
    target = "deployments/m2/image/environments/env2/requirements.txt"

    def write():
        version = Path(source).read_text().strip()
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(f"calib-data=={{version}}\\n")

    return {{"file_dep": [source], "targets": [target], "actions": [write], "verbosity": 2}}
'''


def test_a_preparation_task_reruns_only_when_its_inputs_change(docker_client: docker.DockerClient,
                                                               repo: Project) -> None:
    dodo = repo.root / "dodo.py"
    dodo.write_text(PREPARE.format(dodo=str(REPO / "dodo.py")))
    repo.write("m2/calibration.txt", "7.1\n")
    repo.update_yaml("m2/deployment.yaml",
                     lambda d: d.update(file_dep=["image/environments/env2/requirements.txt"]))

    def run(*args: str):
        from helpers import RunResult

        proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(dodo), "-d", str(repo.root), *args],
                              capture_output=True, text=True, env=doit_env(), timeout=300, check=False)
        return RunResult.parse(proc.returncode, proc.stdout + proc.stderr)

    first = run("deployment=m2")
    assert_ok(first)
    assert {"calibrate", "build:m2"} <= first.ran, first
    assert first.ran_lines.index("calibrate") < first.ran_lines.index("build:m2"), first
    mission = repo.mission_tag("m2")
    assert run_in_image(docker_client, mission, "cat /opt/environments/env2/requirements.txt") == "calib-data==7.1\n"
    assert_nothing_ran(run("deployment=m2"))
    repo.write("m2/calibration.txt", "7.2\n")
    second = run("deployment=m2")
    assert_image_stages(second, {"build:m2"})
    assert "calibrate" in second.ran, second
    assert run_in_image(docker_client, mission, "cat /opt/environments/env2/requirements.txt") == "calib-data==7.2\n"
    assert_nothing_ran(run("deployment=m2"))


def test_a_missing_entrypoint_is_not_called_a_missing_test(docker_client: docker.DockerClient, repo: Project) -> None:
    repo.append("m1/image/Dockerfile.custom", 'ENTRYPOINT ["tini", "--"]\n')
    result = repo.run("deployment=m1", "test:m1")
    assert_clean_failure(result, "test:m1", "could not start 'tini'", "executable file not found", "ENTRYPOINT")
    assert "test command /opt/environments/test not found" not in result.output, result


def test_push_adds_the_extra_tags_of_the_mission_repository(docker_client: docker.DockerClient, repo: Project,
                                                           registry) -> None:
    from helpers import BUILD_TAG, use_generic_registry

    use_generic_registry(repo, registry.host)
    name = f"{repo.ns}-m1"
    first = repo.run("deployment=m1", "push:m1")
    assert_ok(first)
    local = docker_client.images.get(f"{registry.host}/{name}:{BUILD_TAG}")
    key = local.labels["pipeline.inputs"].removeprefix("sha256:")[:12]
    digest = registry.digest(name, BUILD_TAG)
    assert registry.digest(name, f"sandbox-{key}") == digest, registry.tags(name)
    assert sorted(registry.tags(name)) == sorted([BUILD_TAG, f"sandbox-{key}"]), "a local-only name was pushed"
    assert_nothing_ran(repo.run("deployment=m1", "push:m1"))
    # a new template: a local retag and a registry-side tag, no rebuild and no upload
    repo.update_yaml("m1/deployment.yaml", lambda d: d["tags"]["extra"].append("{environment}-extra"))
    before = registry.requests_for(name)
    again = repo.run("deployment=m1", "push:m1")
    assert_ok(again)
    assert {"build:m1", "push:m1"} <= again.ran and "not building" in again.output, again
    assert registry.digest(name, "sandbox-extra") == digest
    sent = [line for line in registry.requests_for(name)[len(before):] if "/blobs/" in line]
    assert not sent, "a retag uploaded layers:\n" + "\n".join(sent)

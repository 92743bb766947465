"""Config for repositories in the old scripts' layout (issue 17): every bad value names file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config, tagging
from pipeline.errors import ConfigError
from pipeline.plan import chain_specs, mission_spec
from pipeline.render import CACHE_MOUNTS, render

PIPELINE = """\
namespace: unit
root: {rootfs: root.tar}
certs: {source: ca.pem, target: common/image/tls-ca-bundle.pem}
chain:
  - name: certs
    dockerfile: common/image/Dockerfile.certs
    context: common/image
    base_arg: ROOT_CONTAINER
    build_args: {PIP_SWITCHES: --no-cache-dir, CLEAR_PKG_CACHES: 1}
  - name: base
    dockerfile: ../stacks/base/Dockerfile
    context: ../stacks/base
    base_arg: BASE_CONTAINER
    tags: ['{environment}-{commit}', 'notebook-base:latest']
registry: {kind: generic, host: 127.0.0.1:5000}
"""
DEPLOYMENT = """\
context: image
tags:
  extra: ['{environment}-{key}', 'notebook-m1:{date}']
file_dep: [image/environments/env1/requirements.txt]
task_dep: [calibrate]
"""


@pytest.fixture
def deployments(tmp_path: Path) -> Path:
    base = tmp_path / "deployments"
    for rel in ("common/image/Dockerfile.certs", "../stacks/base/Dockerfile", "m1/image/Dockerfile.custom"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (base / "root.tar").write_bytes(b"")
    (base / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (base / "pipeline.yaml").write_text(PIPELINE)
    (base / "m1" / "deployment.yaml").write_text(DEPLOYMENT)
    return base


def error_of(base: Path, **overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(base, overrides)
    return str(info.value)


def edit(base: Path, old: str, new: str, name: str = "pipeline.yaml") -> None:
    path = base / name
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_the_layout_loads(deployments: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(deployments.parent)
    s = config.load(deployments)
    certs, base = s.chain
    assert certs.base_arg == "ROOT_CONTAINER" and certs.build_args == {"PIP_SWITCHES": "--no-cache-dir",
                                                                        "CLEAR_PKG_CACHES": "1"}
    assert base.context == (deployments.parent / "stacks" / "base").resolve()
    assert base.extra_tags == ("{environment}-{commit}", "notebook-base:latest")
    m1 = s.deployment("m1")
    assert m1.image_dir == deployments / "m1" / "image" and m1.dockerfile == deployments / "m1/image/Dockerfile.custom"
    assert m1.file_dep == ("deployments/m1/image/environments/env1/requirements.txt",) and m1.task_dep == ("calibrate",)
    specs = chain_specs(s)
    assert specs[0].buildargs["ROOT_CONTAINER"] == "unit/root:latest" and "BASE_IMAGE" not in specs[0].buildargs
    assert specs[1].parent_arg == "BASE_CONTAINER" and specs[1].buildargs["BASE_CONTAINER"] == "unit/certs:latest"
    mission = mission_spec(s, m1)
    assert mission.context == m1.image_dir and mission.parent_arg == "BASE_IMAGE"
    assert (s.pins, mission.buildargs["USE_FROZEN"], mission.buildargs["FROZEN_SPECS"]) == ("floating", "0",
                                                                                             "environments")


@pytest.mark.parametrize(
    ("value", "pins", "use_frozen", "folder"),
    [("false", "floating", "0", "environments"), ("true", "frozen", "1", "env-frozen"),
     ("chilly", "chilly", "2", "env-chilly"), ("2", "chilly", "2", "env-chilly")],
)
def test_pin_levels(deployments: Path, value: str, pins: str, use_frozen: str, folder: str) -> None:
    edit(deployments, "namespace: unit\n", f"namespace: unit\nfrozen: {value}\n")
    s = config.load(deployments)
    args = mission_spec(s, s.deployment("m1")).buildargs
    assert (s.pins, s.frozen, args["USE_FROZEN"], args["FROZEN_SPECS"]) == (pins, pins == "frozen", use_frozen, folder)
    assert config.load(deployments, {"frozen": "chilly"}).pins == "chilly"
    assert config.load(deployments, {"frozen": "0"}).pins == "floating"


def test_cache_mounts(deployments: Path) -> None:
    parts = [(Path("x"), "FROM a\nRUN true\n")]
    assert config.load(deployments).cache_mounts is None
    assert render(parts, buildkit=True, mounts=None) == f"FROM a\nRUN {' '.join(CACHE_MOUNTS)} true\n"
    edit(deployments, "namespace: unit\n", "namespace: unit\nbuilder: {buildkit: true, cache_mounts: false}\n")
    s = config.load(deployments)
    assert s.cache_mounts == () and render(parts, buildkit=True, mounts=s.cache_mounts) == "FROM a\nRUN true\n"
    edit(deployments, "cache_mounts: false", "cache_mounts: [{target: /home/jovyan/.cache, id: pip-jovyan, uid: 1000, "
                                             "gid: 100, sharing: shared}]")
    s = config.load(deployments)
    flag = "--mount=type=cache,target=/home/jovyan/.cache,id=pip-jovyan,uid=1000,gid=100,sharing=shared"
    assert s.cache_mounts == (flag,)
    assert render(parts, buildkit=True, mounts=s.cache_mounts) == f"FROM a\nRUN {flag} true\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    base_arg: ROOT_CONTAINER\n", "    base_arg: root-container\n",
         "pipeline.yaml:8: key 'chain[0].base_arg' is 'root-container'; name the Dockerfile ARG"),
        ("{PIP_SWITCHES: --no-cache-dir,", "{ROOT_CONTAINER: x, PIP_SWITCHES: --no-cache-dir,",
         "pipeline.yaml:9: key 'chain[0].build_args.ROOT_CONTAINER' is set by the pipeline; remove it"),
        ("CLEAR_PKG_CACHES: 1}", "CLEAR_PKG_CACHES: 1, USE_FROZEN: 1}",
         "pipeline.yaml:9: key 'chain[0].build_args.USE_FROZEN' is set by the pipeline"),
        ("CLEAR_PKG_CACHES: 1}", "CLEAR_PKG_CACHES: [1]}",
         "pipeline.yaml:9: key 'chain[0].build_args.CLEAR_PKG_CACHES' must be a scalar value"),
        ("'{environment}-{commit}'", "'{environment}-{branch}'",
         "pipeline.yaml:14: key 'chain[1].tags': tag template '{environment}-{branch}': unknown placeholder {branch}"),
        ("'notebook-base:latest'", "'Notebook Base:latest'",
         "pipeline.yaml:14: key 'chain[1].tags': tag template 'Notebook Base:latest': 'Notebook Base' is not a "
         "repository name"),
        ("tags: ['{environment}-{commit}', 'notebook-base:latest']", "tags: {extra: x}",
         "pipeline.yaml:14: key 'chain[1].tags' must be a list of tag templates"),
        ("    context: ../stacks/base\n", "    context: ../stacks/nope\n",
         "pipeline.yaml:12: key 'chain[1].context': directory"),
        ("    base_arg: BASE_CONTAINER\n", "    base_arg: BASE_CONTAINER\n    colour: red\n",
         "pipeline.yaml:14: unknown key 'chain[1].colour'; expected one of: name, dockerfile, context, build_args, "
         "base_arg, tags"),
        ("namespace: unit\n", "namespace: unit\nfrozen: tepid\n",
         "pipeline.yaml:2: key 'frozen' must be true or false (or chilly), not 'tepid'"),
        ("namespace: unit\n", "namespace: unit\nbuilder: {cache_mounts: /root/.cache}\n",
         "pipeline.yaml:2: key 'builder.cache_mounts' must be false (no mounts) or a list"),
        ("namespace: unit\n", "namespace: unit\nbuilder:\n  cache_mounts:\n    - {target: cache}\n",
         "pipeline.yaml:4: key 'builder.cache_mounts[0].target' must be an absolute path"),
        ("namespace: unit\n", "namespace: unit\nbuilder:\n  cache_mounts:\n    - {target: /c, sharing: all}\n",
         "pipeline.yaml:4: key 'builder.cache_mounts[0].sharing' is 'all'; expected one of: shared, private, locked"),
        ("namespace: unit\n", "namespace: unit\nbuilder:\n  cache_mounts:\n    - {target: /c, uid: -1}\n",
         "pipeline.yaml:4: key 'builder.cache_mounts[0].uid' must be a whole number"),
        ("namespace: unit\n", "namespace: unit\nbuilder:\n  cache_mounts:\n    - {target: /c, size: 1}\n",
         "pipeline.yaml:4: unknown key 'builder.cache_mounts[0].size'"),
    ],
)
def test_bad_pipeline_yaml(deployments: Path, old: str, new: str, expected: str) -> None:
    edit(deployments, old, new)
    assert expected in error_of(deployments)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("context: image\n", "context: img\n", "m1/deployment.yaml:1: key 'context': directory"),
        ("context: image\n", "context: image\ndockerfile: Dockerfile.nope\n",
         "m1/deployment.yaml:2: key 'dockerfile': file"),
        ("context: image\n", "", "m1/deployment.yaml: no Dockerfile.custom or Dockerfile in the deployment folder"),
        ("context: image\n", "context: image\nbase_arg: 1x\n", "m1/deployment.yaml:2: key 'base_arg' is '1x'"),
        ("context: image\n", "context: image\nbase_arg: BASE_CONTAINER\nbuild_args: {BASE_CONTAINER: x}\n",
         "m1/deployment.yaml:3: key 'build_args.BASE_CONTAINER' is set by the pipeline"),
        ("'notebook-m1:{date}'", "'notebook-m1:{date'", "m1/deployment.yaml:3: key 'tags.extra': tag template"),
        ("'{environment}-{key}'", "'{environment}/{key}'", "m1/deployment.yaml:3: key 'tags.extra': tag template"),
        ("file_dep: [image/environments/env1/requirements.txt]", "file_dep: {a: 1}",
         "m1/deployment.yaml:4: key 'file_dep' must be a list of files"),
        ("task_dep: [calibrate]", "task_dep: [1]", "m1/deployment.yaml:5: key 'task_dep' must be a list of doit task"),
    ],
)
def test_bad_deployment_yaml(deployments: Path, old: str, new: str, expected: str) -> None:
    edit(deployments, old, new, "m1/deployment.yaml")
    assert expected in error_of(deployments)


def test_tag_templates_render(tmp_path: Path) -> None:
    key = "sha256:" + "ab" * 32
    render = tagging.render
    assert render("{environment}-{key}", repository="h:5000/ns-m1", environment="dev", key=key, root=tmp_path) \
        == "h:5000/ns-m1:dev-abababababab"
    assert render("notebook-m1:latest", repository="h:5000/ns-m1", environment="dev", key=key, root=tmp_path) \
        == "notebook-m1:latest"
    assert render("127.0.0.1:5000/x:{environment}", repository="r", environment="prod", key=key, root=tmp_path) \
        == "127.0.0.1:5000/x:prod"
    date = render("{date}", repository="r", environment="dev", key=key, root=tmp_path)
    assert len(date) == len("r:20260101") and date[2:].isdigit()

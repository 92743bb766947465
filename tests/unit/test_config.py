"""Config loader: valid files load into frozen settings; every bad input names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError

PIPELINE = """\
environment: sandbox
namespace: unit
root: {rootfs: root.tar}
certs: {source: ca.pem, target: common/tls-ca-bundle.pem}
chain:
  - {name: certs, dockerfile: common/Dockerfile.certs, context: common}
  - {name: common, dockerfile: common/Dockerfile, context: common}
trailer: common/Dockerfile.trailer
registry: {kind: generic, host: 127.0.0.1:5000}
"""


@pytest.fixture
def deployments(tmp_path: Path) -> Path:
    base = tmp_path / "deployments"
    (base / "common").mkdir(parents=True)
    (base / "root.tar").write_bytes(b"")
    (base / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    for name in ("Dockerfile.certs", "Dockerfile", "Dockerfile.trailer"):
        (base / "common" / name).write_text("FROM scratch\n")
    (base / "pipeline.yaml").write_text(PIPELINE)
    for dep in ("alpha", "beta"):
        (base / dep).mkdir()
        (base / dep / "deployment.yaml").write_text("build_args: {FOO: 1}\n")
        (base / dep / "Dockerfile.custom").write_text("FROM x\n")
    return base


def edit(base: Path, old: str, new: str, name: str = "pipeline.yaml") -> None:
    path = base / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def error_of(base: Path, **overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(base, overrides)
    return str(info.value)


def test_valid_config_loads(deployments: Path) -> None:
    s = config.load(deployments)
    assert s.environment == "sandbox" and s.frozen is False and s.buildkit is False
    assert s.root.kind == "rootfs" and s.root.rootfs == deployments / "root.tar"
    assert [layer.name for layer in s.chain] == ["certs", "common"]
    assert [d.name for d in s.deployments] == ["alpha", "beta"]
    alpha = s.deployment("alpha")
    assert alpha.repo == "alpha" and alpha.trailer is True and alpha.build_args == {"FOO": "1"}
    assert alpha.image_ref("sandbox") == "127.0.0.1:5000/alpha:unscanned-latest-sandbox"
    assert s.root_ref == "unit/root:latest" and s.top_ref == "unit/common:latest"
    with pytest.raises(AttributeError):
        s.environment = "prod"  # type: ignore[misc]


def test_overrides_select_and_switch(deployments: Path) -> None:
    s = config.load(deployments, {"deployment": "beta", "environment": "prod", "frozen": "1"})
    assert [d.name for d in s.deployments] == ["beta"]
    assert s.environment == "prod" and s.frozen is True


def test_overrides_from_environment_variables() -> None:
    got = config.collect_overrides({"deployment": None, "environment": "dev"}, {"PIPELINE_DEPLOYMENT": "a", "PIPELINE_ENVIRONMENT": "x"})
    assert got == {"deployment": "a", "environment": "dev"}


def test_plain_dockerfile_is_used_as_is(deployments: Path) -> None:
    (deployments / "alpha" / "Dockerfile.custom").rename(deployments / "alpha" / "Dockerfile")
    alpha = config.load(deployments).deployment("alpha")
    assert alpha.dockerfile.name == "Dockerfile" and alpha.trailer is False


def test_ecr_registry_host(deployments: Path) -> None:
    edit(deployments, "{kind: generic, host: 127.0.0.1:5000}", "{kind: ecr, account: '123456789012', region: us-east-1}")
    assert config.load(deployments).registry.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("namespace: unit\n", "namespace: unit\nbogus: 1\n", "pipeline.yaml:3: unknown key 'bogus'"),
        ("{rootfs: root.tar}", "{rootfs: root.tar, image: x}", "pipeline.yaml:3: key 'root' needs exactly one of"),
        ("{rootfs: root.tar}", "{}", "key 'root' needs exactly one of"),
        ("{rootfs: root.tar}", "{rootfs: nope.tar}", "key 'root.rootfs': file"),
        ("environment: sandbox", "environment: qa", "pipeline.yaml:1: key 'environment' is 'qa'; expected one of: sandbox"),
        ("common/Dockerfile, context", "common/Missing, context", "key 'chain[1].dockerfile': file"),
        ("context: common}\n  - {name: common", "context: nope}\n  - {name: common", "key 'chain[0].context': directory"),
        ("name: common,", "name: certs,", "layer name 'certs' is used twice"),
        ("environment: sandbox\n", "environment: sandbox\nfrozen: maybe\n", "key 'frozen' must be true or false"),
        ("root: {rootfs: root.tar}", "root: [", "pipeline.yaml:5: YAML syntax error"),
        ("host: 127.0.0.1:5000}", "host: 127.0.0.1:5000, color: red}", "unknown key 'registry.color'"),
    ],
)
def test_bad_pipeline_yaml(deployments: Path, old: str, new: str, expected: str) -> None:
    edit(deployments, old, new)
    assert expected in error_of(deployments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: red\n", "alpha/deployment.yaml:1: unknown key 'colour'"),
        ("build_args: {BASE_IMAGE: x}\n", "key 'build_args.BASE_IMAGE' is set by the pipeline"),
        ("build_args: [1]\n", "key 'build_args' must be a mapping"),
        ("repo: Not Valid\n", "key 'repo' is 'Not Valid'"),
        ("dockerfile: Nope\n", "key 'dockerfile': file"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_deployment_yaml(deployments: Path, text: str, expected: str) -> None:
    (deployments / "alpha" / "deployment.yaml").write_text(text)
    assert expected in error_of(deployments)


def test_bad_overrides(deployments: Path) -> None:
    assert "unknown deployment 'nosuch'" in error_of(deployments, deployment="nosuch")
    assert "available under" in error_of(deployments, deployment="nosuch")
    assert "environment override 'qa'" in error_of(deployments, environment="qa")
    assert "frozen override 'perhaps'" in error_of(deployments, frozen="perhaps")


def test_missing_files(tmp_path: Path) -> None:
    assert "deployments folder not found" in error_of(tmp_path / "nowhere")
    (tmp_path / "d").mkdir()
    assert "pipeline.yaml: file not found" in error_of(tmp_path / "d")

"""The registry stages with `kind: ecr`, against moto in server mode (the ECR and STS
APIs) and a local no-auth registry as the data plane (`host`).

Real ECR records a manifest when it is pushed; here the push lands in the local
registry, so the tests mirror it into moto with put_image (as ECR would) before
exercising the stages that go through the ECR API (promote, delete).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    BUILD_TAG,
    DEPLOYMENTS,
    PROMOTED_TAG,
    Project,
    assert_clean_failure,
    assert_not_leaked,
    assert_ok,
    assert_stage_result,
    repo_of,
    use_ecr_registry,
)
from services import LocalRegistry, MotoServer

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_config")]

ROLE_ARN = "arn:aws:iam::123456789012:role/push"


@pytest.fixture
def ecr(moto: MotoServer) -> Any:
    return moto.client("ecr")


@pytest.fixture
def on_ecr(project: Project, moto: MotoServer, ecr: Any, registry: LocalRegistry) -> Project:
    """The fixture project on ECR (moto) with the session's plain registry as its host;
    both deployments' repositories exist, tags mutable."""
    for dep in DEPLOYMENTS:
        ecr.create_repository(repositoryName=repo_of(project, dep))
    use_ecr_registry(project, moto.url, registry.host)
    return project


def ecr_token_password(ecr: Any) -> str:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]


def register_in_ecr(ecr: Any, registry: LocalRegistry, repo: str, tag: str = BUILD_TAG) -> str:
    """What ECR does on a push: record the manifest the registry holds at ``tag``. Returns its digest."""
    media_type, text, digest = registry.manifest(repo, tag)
    ecr.put_image(repositoryName=repo, imageManifest=text, imageManifestMediaType=media_type,
                  imageTag=tag, imageDigest=digest)
    return digest


def ecr_tags(ecr: Any, repo: str) -> dict[str, str]:
    """tag -> digest, as ECR sees the repository."""
    images = ecr.describe_images(repositoryName=repo)["imageDetails"]
    return {tag: image["imageDigest"] for image in images for tag in image.get("imageTags", [])}


def pushed_to_ecr(project: Project, ecr: Any, registry: LocalRegistry, deployment: str = "alpha") -> str:
    """push:DEPLOYMENT to the host, then mirrored into moto; returns the digest."""
    result = project.run(f"push:{deployment}")
    assert_ok(result)
    repo = repo_of(project, deployment)
    assert registry.digest(repo, BUILD_TAG), f"push did not reach {registry.host}\n{result}"
    return register_in_ecr(ecr, registry, repo)


def test_login_uses_the_ecr_token(on_ecr: Project, ecr: Any, registry: LocalRegistry, docker_config: Path) -> None:
    result = on_ecr.run("login")
    assert_ok(result)
    assert_not_leaked(result, ecr_token_password(ecr))
    auths = json.loads((docker_config / "config.json").read_text()).get("auths", {})
    assert registry.host in auths, f"no docker login to {registry.host}: {sorted(auths)}\n{result}"


def test_login_with_a_role_assumes_it(project: Project, moto: MotoServer, registry: LocalRegistry,
                                      docker_config: Path) -> None:
    use_ecr_registry(project, moto.url, registry.host, role_arn=ROLE_ARN, sts_endpoint_url=moto.url)
    result = project.run("login")
    assert_ok(result)
    assert ROLE_ARN in moto.assumed_roles(), f"no assume-role of {ROLE_ARN} reached moto\n{result}"
    assert registry.host in json.loads((docker_config / "config.json").read_text()).get("auths", {}), str(result)


def test_push_goes_to_the_host(on_ecr: Project, ecr: Any, registry: LocalRegistry) -> None:
    digest = pushed_to_ecr(on_ecr, ecr, registry)
    assert ecr_tags(ecr, repo_of(on_ecr, "alpha")) == {BUILD_TAG: digest}
    assert registry.tags(repo_of(on_ecr, "beta")) == []


def test_promote_tags_the_image_through_the_ecr_api(on_ecr: Project, ecr: Any, registry: LocalRegistry) -> None:
    repo = repo_of(on_ecr, "alpha")
    digest = pushed_to_ecr(on_ecr, ecr, registry)
    result = on_ecr.run("promote:alpha")
    assert_ok(result)
    assert "promote:alpha" in result.ran, str(result)
    assert ecr_tags(ecr, repo) == {BUILD_TAG: digest, PROMOTED_TAG: digest}

    again = on_ecr.run("promote:alpha")
    assert_ok(again)
    assert "promote:alpha" in again.uptodate, str(again)


def test_promote_into_an_immutable_tag_fails_naming_it(on_ecr: Project, ecr: Any, registry: LocalRegistry) -> None:
    repo = repo_of(on_ecr, "alpha")
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    digest = pushed_to_ecr(on_ecr, ecr, registry)
    # The promoted tag already names another image.
    media_type, text, _ = registry.manifest(repo, BUILD_TAG)
    other = json.loads(text) | {"annotations": {"pipeline.tests": "another image"}}
    ecr.put_image(repositoryName=repo, imageManifest=json.dumps(other), imageManifestMediaType=media_type,
                  imageTag=PROMOTED_TAG)
    elsewhere = ecr_tags(ecr, repo)[PROMOTED_TAG]
    assert elsewhere != digest

    result = on_ecr.run("promote:alpha")
    assert_clean_failure(result, PROMOTED_TAG)
    assert_stage_result(result, "promote:alpha", "FAILED")
    assert ecr_tags(ecr, repo) == {BUILD_TAG: digest, PROMOTED_TAG: elsewhere}


def test_delete_removes_the_tag_from_ecr(on_ecr: Project, ecr: Any, registry: LocalRegistry) -> None:
    repo = repo_of(on_ecr, "alpha")
    digest = pushed_to_ecr(on_ecr, ecr, registry)
    assert_ok(on_ecr.run("promote:alpha"))
    result = on_ecr.run("delete:alpha", "--", PROMOTED_TAG)
    assert_ok(result)
    assert ecr_tags(ecr, repo) == {BUILD_TAG: digest}

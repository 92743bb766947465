"""Self-checks of the service fixtures (services.py), without the pipeline: each
registry flavour does what the registry tests rely on, and moto answers for ECR and STS."""
from __future__ import annotations

import base64
from collections.abc import Callable

import docker
import docker.errors
import pytest
import requests
from helpers import image_id, push_with_sdk, tiny_image
from services import REGISTRY_PASSWORD, REGISTRY_USER, LocalRegistry, MotoServer

pytestmark = pytest.mark.docker


def errors_of(stream: list[dict]) -> list[str]:
    return [item["error"] for item in stream if "error" in item]


def pushed_digest(stream: list[dict]) -> str:
    (digest,) = [item["aux"]["Digest"] for item in stream if "Digest" in item.get("aux", {})]
    return digest


def test_plain_registry_push_retag_pull_delete(docker_client: docker.DockerClient, registry: LocalRegistry,
                                               namespace: str) -> None:
    repo = f"{namespace}-svc"
    ref = f"{registry.host}/{repo}:t1"
    tiny_image(docker_client, namespace, ref)
    stream = push_with_sdk(docker_client, ref)
    assert not errors_of(stream), stream
    digest = pushed_digest(stream)
    assert registry.digest(repo, "t1") == digest
    assert registry.tags(repo) == ["t1"]
    assert registry.requests_for(repo, "blobs/"), "the access log shows no blob upload"

    # Retag registry-side: PUT the same bytes under another tag; the digest is unchanged.
    media_type, text, _ = registry.manifest(repo, "t1")
    put = requests.put(f"{registry.url}/v2/{repo}/manifests/t2", data=text.encode(),
                       headers={"Content-Type": media_type}, timeout=10)
    assert put.status_code == 201, put.text
    assert registry.digest(repo, "t2") == digest

    # Pull back by digest after removing the local copy.
    docker_client.images.remove(ref)
    docker_client.images.pull(f"{registry.host}/{repo}@{digest}")
    assert image_id(docker_client, f"{registry.host}/{repo}@{digest}")

    # DELETE takes a digest and removes every tag on it.
    deleted = requests.delete(f"{registry.url}/v2/{repo}/manifests/{digest}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    assert registry.digest(repo, "t1") is None and registry.tags(repo) == []


def test_auth_registry_needs_the_password(docker_client: docker.DockerClient, auth_registry: LocalRegistry,
                                          namespace: str) -> None:
    repo = f"{namespace}-svc"
    ref = f"{auth_registry.host}/{repo}:t1"
    assert requests.get(f"{auth_registry.url}/v2/", timeout=5).status_code == 401
    assert requests.get(f"{auth_registry.url}/v2/", auth=(REGISTRY_USER, "wrong"), timeout=5).status_code == 401
    tiny_image(docker_client, namespace, ref)

    refused = push_with_sdk(docker_client, ref, auth=(REGISTRY_USER, "wrong"))
    assert errors_of(refused), refused
    with pytest.raises(docker.errors.APIError, match="401"):
        docker_client.login(REGISTRY_USER, "wrong", registry=auth_registry.host, reauth=True)

    stream = push_with_sdk(docker_client, ref, auth=(REGISTRY_USER, REGISTRY_PASSWORD))
    assert not errors_of(stream), stream
    assert auth_registry.digest(repo, "t1") == pushed_digest(stream)


def test_readonly_registry_rejects_pushes(docker_client: docker.DockerClient, readonly_registry: LocalRegistry,
                                          namespace: str) -> None:
    ref = f"{readonly_registry.host}/{namespace}-svc:t1"
    tiny_image(docker_client, namespace, ref)
    errors = errors_of(push_with_sdk(docker_client, ref))
    assert errors and "405" in errors[0] and "not allowed" in errors[0].lower(), errors


def test_nodelete_registry_refuses_manifest_deletes(docker_client: docker.DockerClient,
                                                    nodelete_registry: LocalRegistry, namespace: str) -> None:
    repo = f"{namespace}-svc"
    ref = f"{nodelete_registry.host}/{repo}:t1"
    tiny_image(docker_client, namespace, ref)
    digest = pushed_digest(push_with_sdk(docker_client, ref))
    refused = requests.delete(f"{nodelete_registry.url}/v2/{repo}/manifests/{digest}", timeout=10)
    assert refused.status_code == 405 and "UNSUPPORTED" in refused.text, refused.text
    assert nodelete_registry.digest(repo, "t1") == digest


def test_registry_can_be_stopped_and_restarted(docker_client: docker.DockerClient,
                                               registry_factory: Callable[..., LocalRegistry],
                                               namespace: str) -> None:
    registry = registry_factory()
    repo = f"{namespace}-svc"
    ref = f"{registry.host}/{repo}:t1"
    tiny_image(docker_client, namespace, ref)
    digest = pushed_digest(push_with_sdk(docker_client, ref))
    registry.stop()
    assert not registry.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{registry.url}/v2/", timeout=2)
    assert errors_of(push_with_sdk(docker_client, ref))
    registry.start()
    assert registry.digest(repo, "t1") == digest  # storage survives a restart


def test_moto_serves_ecr_and_sts(moto: MotoServer) -> None:
    ecr = moto.client("ecr")
    ecr.create_repository(repositoryName="svc/alpha", imageTagMutability="IMMUTABLE")
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    role = moto.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/push", RoleSessionName="tests")
    assert role["Credentials"]["AccessKeyId"]
    moto.reset()
    assert moto.client("ecr").describe_repositories()["repositories"] == []

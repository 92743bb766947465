"""The stage cache with ``cache.trust``: only entries whose signed provenance verifies, attests the stage's
key and extends the local parent's layers are pulled; the others are rejected with a warning and built."""
from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from helpers import Project, assert_ok, cleanup_namespace, run_doit, summary_rows
from services import LocalRegistry

pytestmark = pytest.mark.docker

CHAIN = ("root", "chain:certs", "chain:common")
LEAVES = ("alpha", "beta", "gamma")


def keygen(project: Project, name: str) -> Path:
    out = project.root.parent / "keys" / f"{name}.pem"
    assert_ok(project.run("sign_keygen", "--out", str(out)))
    return out


def add_gamma(project: Project) -> None:
    project.write("gamma/deployment.yaml", f"repo: {project.ns}-gamma\ntest: /opt/environments/test\n")
    project.write("gamma/Dockerfile.custom", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo gamma > /name\n")
    project.write("gamma/environments/test", "#!/bin/sh\ntest \"$(cat /name)\" = gamma\n", executable=True)


def cache_repo(project: Project) -> str:
    return f"{project.ns}-cache"


def stage_key(project: Project, task: str) -> str:
    return json.loads((project.root / "build" / "keys" / f"{task.replace(':', '-')}.json").read_text())["digest"]


def entry_tag(project: Project, task: str) -> str:
    return f"{task.replace(':', '-')}-{stage_key(project, task).split(':')[1]}"


def att_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


def provenance_of(registry: LocalRegistry, repo: str, digest: str) -> dict[str, Any]:
    _, text, _ = registry.manifest(repo, att_tag(digest))
    layer = json.loads(text)["layers"][0]
    envelope = requests.get(f"{registry.url}/v2/{repo}/blobs/{layer['digest']}", timeout=10).json()
    return json.loads(base64.b64decode(envelope["payload"]))


def attach_signed(registry: LocalRegistry, repo: str, digest: str, statement: dict[str, Any], key: Path) -> None:
    """Sign ``statement`` with ``key`` and attach it to ``repo@digest``: what a runner holding that key could do."""
    from pipeline import provenance, signing
    from pipeline.registry import referrers
    from pipeline.registry.backend import Backend
    from pipeline.settings import Registry, Sign

    backend = Backend(Registry(kind="generic", host=registry.host, retries=0))
    subject = backend.http.manifest(repo, digest)
    assert subject is not None
    envelope = signing.seal(statement, signing.load_signer(Sign(key=str(key))))
    referrers.attach(backend, repo, subject, [referrers.Envelope(provenance.SLSA_PROVENANCE, envelope)])


def push_foreign(client: docker.DockerClient, project: Project, registry: LocalRegistry, tag: str, inputs: str) -> str:
    """An image FROM the root (not from chain:common) that claims the stage's inputs; pushed at ``tag``."""
    dockerfile = (f"FROM {project.local_image('root')}\nRUN echo planted > /name\n"
                  f"LABEL pipeline.inputs={inputs} pipeline.namespace={project.ns}\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    buffer.seek(0)
    ref = f"{registry.host}/{cache_repo(project)}:{tag}"
    client.images.build(fileobj=buffer, custom_context=True, tag=ref, rm=True)
    for line in client.images.push(ref, stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(ref)
    digest = registry.digest(cache_repo(project), tag)
    assert digest
    return digest


def test_only_signed_entries_of_our_lineage_are_pulled(
        project: Project, registry: LocalRegistry, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    add_gamma(project)
    trusted, unknown = keygen(project, "ci"), keygen(project, "stranger")
    project.update_yaml("pipeline.yaml", lambda c: c.update(
        registry={"kind": "generic", "host": registry.host, "retries": 1, "backoff": 0.1},
        cache={"repo": cache_repo(project)},
        sign={"key": str(trusted)},
    ))
    first = project.run()
    assert first.rc == 0, first.output[-3000:]
    assert first.output.count("signed the cache entry's provenance") == len(CHAIN) + len(LEAVES), first.output
    repo = cache_repo(project)

    # alpha: unsigned (its attestations deleted)
    alpha = registry.digest(repo, entry_tag(project, "build:alpha"))
    att = registry.digest(repo, att_tag(alpha))
    assert requests.delete(f"{registry.url}/v2/{repo}/manifests/{att}", timeout=10).status_code == 202
    # beta: the same statement, signed by a key the runner does not trust
    beta = registry.digest(repo, entry_tag(project, "build:beta"))
    attach_signed(registry, repo, beta, provenance_of(registry, repo, beta), unknown)
    # gamma: signed by the trusted key and attesting the right key, but built on another parent
    gamma_tag = entry_tag(project, "build:gamma")
    statement = provenance_of(registry, repo, registry.digest(repo, gamma_tag))
    planted = push_foreign(docker_client, project, registry, gamma_tag, stage_key(project, "build:gamma"))
    statement["subject"][0]["digest"]["sha256"] = planted.split(":")[1]
    attach_signed(registry, repo, planted, statement, trusted)

    # a fresh runner (its own namespace, no .doit.db, no build/) that trusts only the CI key; the mission
    # images' tags are the same in both namespaces, so drop them here to make the runner look for them
    for dep in LEAVES:
        docker_client.images.remove(f"{registry.host}/{project.ns}-{dep}:unscanned-latest-sandbox")
    ns2 = project.ns + "r"
    runner = tmp_path / "runner"
    shutil.copytree(project.deployments, runner / "deployments")
    runner_project = Project(runner, ns2, project.rootfs)
    runner_project.update_yaml("pipeline.yaml", lambda c: (c.update(namespace=ns2), c.pop("sign"),
                                                           c["cache"].update(trust=[str(trusted) + ".pub"])))
    try:
        result = run_doit(runner)
        assert result.rc == 0, result.output[-4000:]
        rows = summary_rows(result.output, raw=True)
        assert {task: rows[task] for task in CHAIN} == dict.fromkeys(CHAIN, "pulled"), rows
        assert {d: rows[f"build:{d}"] for d in LEAVES} == dict.fromkeys(LEAVES, "built"), rows
        warnings = [line for line in result.output.splitlines() if "WARNING: cache entry" in line]
        print("\n".join(warnings))  # shown with -s; docs/scaling.md quotes them
        assert len(warnings) == 3, warnings
        assert any("build:alpha" in w and "unsigned" in w for w in warnings), warnings
        assert any("build:beta" in w and "signed by unknown key" in w for w in warnings), warnings
        assert any("build:gamma" in w and "foreign lineage" in w for w in warnings), warnings
        assert "Traceback" not in result.output
        assert docker_client.containers.run(f"{registry.host}/{project.ns}-gamma:unscanned-latest-sandbox",
                                            ["cat", "/name"], remove=True).decode().strip() == "gamma"
    finally:
        left = cleanup_namespace(docker_client, ns2)
        assert not left, left

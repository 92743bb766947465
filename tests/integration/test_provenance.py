"""Supply chain: sbom:NAME, attest:NAME, verify:NAME and the sign.required gate, against a real registry
(Debian's docker-registry, which has no referrers API: the tag-schema layout) and ECR (moto)."""
from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import (
    BUILD_TAG,
    PROMOTED_TAG,
    Project,
    assert_clean_failure,
    assert_ok,
    assert_stage_result,
    custom_dockerfile,
    line_with,
    load_manifest,
    repo_of,
    summary_rows,
    use_ecr_registry,
    use_generic_registry,
)
from services import LocalRegistry, MotoServer

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_config")]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# A Debian-like system: binaries whose source package (and its version) differ, and two Python environments.
FAKE_SYSTEM = (
    "RUN mkdir -p /opt/envs/x/lib/python3.11/site-packages/Foo_Bar-1.2.3.dist-info"
    " /usr/lib/python3/dist-packages/six-1.16.0.dist-info /var/lib/dpkg /usr/lib"
    " && printf 'Package: libc6\\nStatus: install ok installed\\nArchitecture: amd64\\nSource: glibc (2.36-9)\\n"
    "Version: 2.36-9+b1\\n\\nPackage: zlib1g\\nStatus: install ok installed\\nArchitecture: amd64\\n"
    "Source: zlib\\nVersion: 1:1.2.13.dfsg-1\\n\\nPackage: base-files\\nStatus: install ok installed\\n"
    "Architecture: all\\nVersion: 12.4\\n' > /var/lib/dpkg/status"
    " && printf 'ID=debian\\nVERSION_ID=\"12\"\\n' > /usr/lib/os-release"
)


# --------------------------------------------------------------------------
# set-up helpers
# --------------------------------------------------------------------------
def keygen(project: Project, name: str, kind: str = "ecdsa") -> Path:
    """`doit sign_keygen` into a folder beside the project (never inside it); returns the private key path."""
    out = project.root.parent / "keys" / f"{name}.pem"
    result = project.run("sign_keygen", "--out", str(out), "--type", kind)
    assert_ok(result)
    return out


def use_signing(project: Project, key: Path | None, public: list[Path], required: bool = False) -> None:
    sign: dict[str, Any] = {"public_keys": [str(p) for p in public], "required": required}
    if key is not None:
        sign["key"] = str(key)
    project.update_yaml("pipeline.yaml", lambda c: c.update(sign=sign))


def as_verifier(project: Project, public: list[Path]) -> None:
    """What an operator has: the public keys, no private key (so verify never attests first)."""
    use_signing(project, None, public)


def pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


@pytest.fixture
def signed(project: Project, registry: LocalRegistry) -> tuple[Project, Path]:
    """The fixture project on the session registry, signing with a fresh ECDSA key."""
    use_generic_registry(project, registry.host)
    key = keygen(project, "ci")
    use_signing(project, key, [pub(key)])
    return project, key


def att_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


def put_blob(registry: LocalRegistry, repo: str, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    url = location if location.startswith("http") else registry.url + location
    done = requests.put(url, params={"digest": digest}, data=data, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def put_manifest(registry: LocalRegistry, repo: str, tag: str, body: str, media_type: str = OCI_MANIFEST) -> None:
    resp = requests.put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=body.encode(), timeout=10,
                        headers={"Content-Type": media_type})
    assert resp.status_code == 201, resp.text


def blob(registry: LocalRegistry, repo: str, digest: str) -> bytes:
    resp = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=10)
    resp.raise_for_status()
    return resp.content


def statements(registry: LocalRegistry, repo: str, digest: str) -> dict[str, dict[str, Any]]:
    """predicateType -> statement of each envelope under the image's .att tag (signatures not checked)."""
    _, text, _ = registry.manifest(repo, att_tag(digest))
    out = {}
    for layer in json.loads(text)["layers"]:
        envelope = json.loads(blob(registry, repo, layer["digest"]))
        out[layer["annotations"]["predicateType"]] = json.loads(base64.b64decode(envelope["payload"]))
    return out


# --------------------------------------------------------------------------
# sbom
# --------------------------------------------------------------------------
def test_sbom_validates_with_both_libraries_and_lists_the_manifest_packages(project: Project) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", FAKE_SYSTEM))
    result = project.run("deployment=alpha", "sbom:alpha")
    assert_ok(result)
    manifest = load_manifest(project, "alpha")
    cdx_path = project.root / "build" / "sbom" / "alpha.cdx.json"
    spdx_path = project.root / "build" / "sbom" / "alpha.spdx.json"
    cdx_text = cdx_path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx_text) is None
    document = parse_file(str(spdx_path))
    assert validate_full_spdx_document(document) == []
    cdx = json.loads(cdx_text)
    assert cdx["specVersion"] == "1.6"

    # the image is the described component, by its ID (not pushed yet: no repo digest)
    root = cdx["metadata"]["component"]
    assert root["type"] == "container"
    assert {"name": "pipeline:image_id", "value": manifest["image"]["id"]} in root["properties"]
    # every dpkg package (with its source) and every Python distribution of every environment
    purls = {c["purl"] for c in cdx["components"]}
    assert set(manifest["dpkg"]) == {"libc6", "zlib1g", "base-files"}
    assert "pkg:deb/debian/libc6@2.36-9%2Bb1?arch=amd64&distro=debian-12&upstream=glibc%402.36-9" in purls, purls
    assert "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib" in purls, purls
    assert "pkg:deb/debian/base-files@12.4?arch=all&distro=debian-12" in purls, purls
    for prefix, dists in manifest["python"].items():
        for name, version in dists.items():
            assert any(c["purl"] == f"pkg:pypi/{name}@{version}" and
                       {"name": "pipeline:python:environment", "value": prefix} in c["properties"]
                       for c in cdx["components"]), (prefix, name)
    assert len(cdx["components"]) == 3 + 2
    spdx_names = {p.name for p in document.packages}
    assert {"libc6", "zlib1g", "base-files", "foo-bar", "six"} <= spdx_names
    libc = next(p for p in document.packages if p.name == "libc6")
    assert libc.source_info == "built package from: glibc 2.36-9"
    assert any(r.locator.startswith("pkg:deb/debian/libc6@") for r in libc.external_references)

    again = project.run("deployment=alpha", "sbom:alpha")
    assert_ok(again)
    assert "sbom:alpha" in again.uptodate, again


# --------------------------------------------------------------------------
# attest and verify (generic registry: tag schema)
# --------------------------------------------------------------------------
def test_image_all_signs_then_verify_passes_and_names_the_edited_file(
        registry: LocalRegistry, signed: tuple[Project, Path]) -> None:
    project, key = signed
    first = project.run("deployment=alpha", "image_all:alpha")
    assert_ok(first)
    rows = summary_rows(first.output)
    order = [name for name in rows if name.endswith(":alpha")]
    chain = ["build:alpha", "test:alpha", "push:alpha", "sbom:alpha", "attest:alpha", "scan:alpha", "verify:alpha",
             "promote:alpha"]
    assert all(rows.get(n) == "ran" for n in chain), rows
    for before, after in (("build", "test"), ("test", "push"), ("push", "attest"), ("sbom", "attest"),
                          ("attest", "verify"), ("verify", "promote"), ("scan", "promote")):
        assert order.index(f"{before}:alpha") < order.index(f"{after}:alpha"), (before, after, order)
    assert line_with(first.output, "verify:alpha", "built from exactly this checkout"), first
    repo = repo_of(project, "alpha")
    digest = registry.digest(repo, BUILD_TAG)
    assert registry.digest(repo, PROMOTED_TAG) == digest
    found = statements(registry, repo, digest)
    provenance = found["https://slsa.dev/provenance/v1"]
    assert provenance["_type"] == "https://in-toto.io/Statement/v1"
    assert provenance["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
    build = provenance["predicate"]["buildDefinition"]
    keyed = json.loads((project.root / "build" / "keys" / "build-alpha.json").read_text())
    assert build["internalParameters"]["pipeline.inputs"] == keyed["digest"]
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["parent image"]["digest"]["sha256"] == keyed["parts"]["parent"].split(":")[1]
    assert deps["environments/test"]["digest"]["sha256"] == keyed["parts"]["files"]["environments/test"].split(":")[-1]
    assert found["https://cyclonedx.org/bom"]["predicate"]["specVersion"] == "1.6"

    second = project.run("deployment=alpha", "image_all:alpha")
    assert_ok(second)
    assert not second.ran & set(chain), second

    # an operator with only the public key, after an edit to a keyed file
    as_verifier(project, [pub(key)])
    project.append("alpha/environments/test", "echo edited\n")
    edited = project.run("deployment=alpha", "verify:alpha")
    assert_ok(edited)
    assert line_with(edited.output, "verify:alpha", "file environments/test changed"), edited
    assert not line_with(edited.output, "exactly this checkout"), edited
    assert "build:alpha" not in edited.ran, edited


def test_verify_fails_on_a_tampered_envelope_a_wrong_key_and_another_digest(
        registry: LocalRegistry, signed: tuple[Project, Path]) -> None:
    project, key = signed
    assert_ok(project.run("deployment=alpha", "attest:alpha"))
    repo = repo_of(project, "alpha")
    first = registry.digest(repo, BUILD_TAG)
    media_type, good_att, _ = registry.manifest(repo, att_tag(first))
    as_verifier(project, [pub(key)])
    assert_ok(project.run("deployment=alpha", "verify:alpha"))

    # 1. the envelope tampered with in the registry: same signature, another payload
    manifest = json.loads(good_att)
    layer = next(x for x in manifest["layers"] if x["annotations"]["predicateType"].startswith("https://slsa.dev"))
    envelope = json.loads(blob(registry, repo, layer["digest"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["deployment"] = "evil"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    data = json.dumps(envelope).encode()
    layer["digest"], layer["size"] = put_blob(registry, repo, data), len(data)
    put_manifest(registry, repo, att_tag(first), json.dumps(manifest))
    tampered = project.run("deployment=alpha", "verify:alpha")
    assert tampered.rc == 1, tampered
    assert_clean_failure(tampered, "signature does not match")
    put_manifest(registry, repo, att_tag(first), good_att, media_type)

    # 2. checked with the wrong public key
    other = keygen(project, "other", "ed25519")
    as_verifier(project, [pub(other)])
    wrong = project.run("deployment=alpha", "verify:alpha")
    assert wrong.rc == 1, wrong
    assert_clean_failure(wrong, "signed by unknown key")
    as_verifier(project, [pub(key)])
    assert_ok(project.run("deployment=alpha", "verify:alpha"))

    # 3. the statement belongs to another digest: a new image, the old one's attestations copied to it
    project.append("alpha/Dockerfile.custom", "RUN echo v2 > /v2\n")
    assert_ok(project.run("deployment=alpha", "push:alpha"))
    second = registry.digest(repo, BUILD_TAG)
    assert second != first
    put_manifest(registry, repo, att_tag(second), good_att, media_type)
    foreign = project.run("deployment=alpha", "verify:alpha")
    assert foreign.rc == 1, foreign
    assert_clean_failure(foreign, f"about {first[:19]}", f"not this image {second[:19]}")

    # --ref checks any tag or digest: the first image still verifies
    by_digest = project.run("deployment=alpha", "verify:alpha", "--ref", first)
    assert_ok(by_digest)
    assert line_with(by_digest.output, "verify:alpha", "Dockerfile alpha/Dockerfile.custom changed"), by_digest


def test_verify_exit_2_when_the_attestations_cannot_be_fetched(signed: tuple[Project, Path]) -> None:
    from services import free_port

    project, key = signed
    as_verifier(project, [pub(key)])
    use_generic_registry(project, f"127.0.0.1:{free_port()}", retries=0)
    result = project.run("deployment=alpha", "verify:alpha")
    assert result.rc == 2, result
    assert_clean_failure(result, "cannot fetch the attestations")


def test_promote_refuses_an_unsigned_image_when_signing_is_required(
        registry: LocalRegistry, signed: tuple[Project, Path]) -> None:
    project, key = signed
    use_signing(project, None, [pub(key)], required=True)
    result = project.run("deployment=alpha", "promote:alpha")
    assert result.rc == 1, result
    assert_clean_failure(result, "promote:alpha: refused", "no valid signed provenance", "unsigned")
    refusal = [line for line in result.output.splitlines() if "refused" in line]
    assert len(refusal) == 1, result
    assert registry.digest(repo_of(project, "alpha"), PROMOTED_TAG) is None

    use_signing(project, key, [pub(key)], required=True)
    assert_ok(project.run("deployment=alpha", "attest:alpha"))
    promoted = project.run("deployment=alpha", "promote:alpha")
    assert_ok(promoted)
    assert registry.digest(repo_of(project, "alpha"), PROMOTED_TAG) == registry.digest(repo_of(project, "alpha"), BUILD_TAG)


# --------------------------------------------------------------------------
# ECR (moto): manifests through ECR's API, blobs through the data plane
# --------------------------------------------------------------------------
def test_attest_and_verify_on_ecr(project: Project, moto: MotoServer, registry: LocalRegistry) -> None:
    ecr = moto.client("ecr")
    repo = repo_of(project, "alpha")
    ecr.create_repository(repositoryName=repo)
    use_ecr_registry(project, moto.url, registry.host)
    key = keygen(project, "ci")
    use_signing(project, key, [pub(key)])
    assert_ok(project.run("deployment=alpha", "push:alpha"))
    media_type, text, digest = registry.manifest(repo, BUILD_TAG)
    # moto never sees a docker push: record the manifest as ECR would
    ecr.put_image(repositoryName=repo, imageManifest=text, imageManifestMediaType=media_type, imageTag=BUILD_TAG,
                  imageDigest=digest)
    result = project.run("deployment=alpha", "verify:alpha")
    assert_ok(result)
    assert_stage_result(result, "attest:alpha", "ran")
    assert line_with(result.output, "verify:alpha", "built from exactly this checkout"), result
    tags = {t for image in ecr.describe_images(repositoryName=repo)["imageDetails"] for t in image.get("imageTags", [])}
    assert att_tag(digest) in tags, tags
    as_verifier(project, [pub(keygen(project, "other"))])
    wrong = project.run("deployment=alpha", "verify:alpha")
    assert wrong.rc == 1 and "signed by unknown key" in wrong.output, wrong


# --------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------
def test_sign_keygen_writes_a_0600_key_that_never_shows_up(signed: tuple[Project, Path]) -> None:
    project, key = signed
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in pub(key).read_text()
    secret = key.read_text().splitlines()[1]
    again = project.run("sign_keygen", "--out", str(key))
    assert_clean_failure(again, "already exists")
    assert key.read_text().splitlines()[1] == secret
    inside = project.run("sign_keygen", "--out", str(project.root / "build" / "k.pem"))
    assert_clean_failure(inside, "inside")
    assert not (project.root / "build" / "k.pem").exists()
    result = project.run("deployment=alpha", "attest:alpha")
    assert_ok(result)
    assert secret not in result.output
    for path in (project.root / "build").rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY" not in path.read_text(errors="replace"), path
    project.update_yaml("pipeline.yaml", lambda c: c["sign"].update(key=str(project.path("alpha/k.pem"))))
    bad = project.run("deployment=alpha", "list")
    assert_clean_failure(bad, "sign.key", "inside deployments/")


def test_release_refuses_before_any_tag_moves_when_one_image_is_unsigned(
        registry: LocalRegistry, signed: tuple[Project, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=project.root, capture_output=True, text=True, check=True).stdout

    project, key = signed
    assert_ok(project.run("image_all"))
    beta = repo_of(project, "beta")
    att = registry.digest(beta, att_tag(registry.digest(beta, PROMOTED_TAG)))
    assert requests.delete(f"{registry.url}/v2/{beta}/manifests/{att}", timeout=10).status_code == 202
    use_signing(project, key, [pub(key)], required=True)
    for name, value in {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "T",
                        "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(name, value)
    (project.root / ".gitignore").write_text("build/\n.doit.db*\n.pipeline.lock\ndeployments/common/tls-ca-bundle.pem\n")
    upstream = project.root.parent / "upstream.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(upstream)], check=True)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "fixture")
    git("remote", "add", "origin", str(upstream))
    git("push", "-q", "-u", "origin", "main")
    result = project.run("release", "--", "v9.9.9")
    assert result.rc == 1, result
    assert_clean_failure(result, "release: refused", beta, "unsigned")
    assert git("tag", "-l") == ""
    assert "v9.9.9" not in registry.tags(repo_of(project, "alpha")) + registry.tags(beta)

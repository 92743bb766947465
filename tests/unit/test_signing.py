"""DSSE envelopes, provenance statements, sign: settings and dpkg details, without a daemon."""
from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from pipeline import provenance, signing
from pipeline.config_sign import parse_sign
from pipeline.errors import ConfigError, PipelineError, VerificationFailed
from pipeline.keys import InputKey
from pipeline.section import Section
from pipeline.settings import Sign
from pipeline.stages.manifest import parse_dpkg_details

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
PARTS = {"dockerfile": {"rendered": "sha256:" + "11" * 32, "sources": {"alpha/Dockerfile.custom": "sha256:" + "22" * 32}},
         "files": {"app.txt": "file:644:sha256:" + "33" * 32, "link": "link:app.txt"}, "urls": [],
         "args": {"X": "1"}, "parent": "sha256:" + "44" * 32}


@pytest.fixture(params=signing.KEY_TYPES)
def key(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    out = tmp_path / "keys" / f"{request.param}.pem"
    signing.keygen(out, request.param, None, [tmp_path / "project"])
    return out


def statement(digest: str = DIGEST, parts: dict[str, Any] | None = None) -> dict[str, Any]:
    return provenance.provenance_statement(name="host/repo", digest=digest, task="build:alpha",
                                           key=InputKey.of(parts or PARTS), external={"deployment": "alpha"},
                                           metadata={})


def test_keygen_modes_and_refusals(key: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_name(key.name + ".pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(PipelineError, match="already exists"):
        signing.keygen(key, "ecdsa", None, [])
    with pytest.raises(PipelineError, match="inside"):
        signing.keygen(tmp_path / "project" / "k.pem", "ecdsa", None, [tmp_path / "project"])
    with pytest.raises(PipelineError, match="not one of"):
        signing.keygen(tmp_path / "x.pem", "rsa", None, [])


def test_seal_then_open(key: Path) -> None:
    signer = signing.load_signer(Sign(key=str(key)))
    opened = signing.open_envelope(signing.seal(statement(), signer),
                                   [signing.load_public_key(key.with_name(key.name + ".pub"))])
    provenance.check_subject(opened.statement, DIGEST, provenance.SLSA_PROVENANCE)
    assert provenance.attested_key(opened.statement).digest == InputKey.of(PARTS).digest


def _tamper_payload(envelope: dict[str, Any]) -> None:
    body = json.loads(base64.b64decode(envelope["payload"]))
    body["predicate"]["buildDefinition"]["externalParameters"]["deployment"] = "evil"
    envelope["payload"] = base64.b64encode(json.dumps(body).encode()).decode()


def _tamper_type(envelope: dict[str, Any]) -> None:
    envelope["payloadType"] = "text/plain"


def _tamper_signature(envelope: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[-1] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize(("tamper", "message"), [
    (_tamper_payload, "does not match"),
    (_tamper_signature, "does not match"),
    (_tamper_type, "payload type"),
    (lambda e: e.update(signatures=[]), "unknown key"),
    (lambda e: e.pop("payload"), "not a DSSE envelope"),
])
def test_a_changed_envelope_fails(key: Path, tamper: Any, message: str) -> None:
    envelope = json.loads(signing.seal(statement(), signing.load_signer(Sign(key=str(key)))))
    tamper(envelope)
    with pytest.raises(VerificationFailed, match=message):
        signing.open_envelope(json.dumps(envelope).encode(), [signing.load_public_key(key.with_name(key.name + ".pub"))])


def test_wrong_key_and_wrong_subject(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    for path in (a, b):
        signing.keygen(path, "ecdsa", None, [])
    data = signing.seal(statement(), signing.load_signer(Sign(key=str(a))))
    with pytest.raises(VerificationFailed, match="signed by unknown key"):
        signing.open_envelope(data, [signing.load_public_key(tmp_path / "b.pem.pub")])
    opened = signing.open_envelope(data, [signing.load_public_key(tmp_path / "a.pem.pub")])
    with pytest.raises(VerificationFailed, match="not this image"):
        provenance.check_subject(opened.statement, OTHER, provenance.SLSA_PROVENANCE)


def test_parts_that_do_not_hash_to_the_attested_key_fail() -> None:
    forged = statement()
    forged["predicate"]["buildDefinition"]["internalParameters"]["keyParts"]["files"]["app.txt"] = "file:644:sha256:" + "00" * 32
    with pytest.raises(VerificationFailed, match="hash to"):
        provenance.attested_key(forged)


def test_resolved_dependencies_name_the_parent_and_every_keyed_file() -> None:
    deps = {d["name"]: d for d in statement()["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["parent image"]["digest"] == {"sha256": "44" * 32}
    assert deps["app.txt"]["digest"] == {"sha256": "33" * 32}
    assert deps["alpha/Dockerfile.custom"]["digest"] == {"sha256": "22" * 32}
    assert deps["link"]["annotations"]["pipeline.target"] == "app.txt"


def test_encrypted_key_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "enc.pem"
    signing.keygen(path, "ed25519", b"correct horse", [])
    with pytest.raises(ConfigError, match="encrypted"):
        signing.load_signer(Sign(key=str(path)))
    monkeypatch.setenv("PIPELINE_TEST_PASS", "wrong")
    with pytest.raises(ConfigError, match="passphrase is wrong") as caught:
        signing.load_signer(Sign(key=str(path), passphrase_env="PIPELINE_TEST_PASS"))
    assert "wrong" not in str(caught.value).replace("is wrong", "")
    monkeypatch.setenv("PIPELINE_TEST_PASS", "correct horse")
    signing.load_signer(Sign(key=str(path), passphrase_env="PIPELINE_TEST_PASS"))
    monkeypatch.setenv("PIPELINE_TEST_KEY", path.read_text())
    monkeypatch.delenv("PIPELINE_TEST_PASS")
    with pytest.raises(ConfigError, match="PIPELINE_TEST_PASS, which is not set"):
        signing.load_signer(Sign(key="PIPELINE_TEST_KEY", passphrase_env="PIPELINE_TEST_PASS"))


@pytest.mark.parametrize(("data", "message"), [
    ({"key": "keys/ci.pem"}, "inside deployments/"),
    ({"key": "../build/ci.pem"}, "inside build/"),
    ({"required": True}, "lists no key"),
    ({"public_keys": ["missing.pub"]}, "does not exist"),
    ({"passphrase_env": "not a name"}, "must name an environment variable"),
    ({"bogus": 1}, "unknown key 'sign.bogus'"),
])
def test_sign_settings_errors(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    base = tmp_path / "deployments"
    base.mkdir()
    with pytest.raises(ConfigError, match=message):
        parse_sign(Section(base / "pipeline.yaml", data, "sign"), base)


def test_sign_settings_ok(tmp_path: Path) -> None:
    base = tmp_path / "deployments"
    (base / "keys").mkdir(parents=True)
    (base / "keys" / "ci.pub").write_text("x")
    sign = parse_sign(Section(base / "pipeline.yaml", {"key": "CI_KEY", "public_keys": ["keys/ci.pub"],
                                                       "required": True}, "sign"), base)
    assert sign == Sign(key="CI_KEY", public_keys=(base / "keys" / "ci.pub",), required=True)


def test_dpkg_details_keep_arch_and_source() -> None:
    text = ("Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc (2.36-9)\n"
            "Version: 2.36-9+b1\n\nPackage: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n"
            "Source: zlib\nVersion: 1:1.2.13\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
            "Package: base-files\nStatus: install ok installed\nArchitecture: all\nVersion: 12.4\n")
    assert parse_dpkg_details(text) == {
        "base-files": {"arch": "all", "source": "base-files", "source_version": "12.4"},
        "libc6": {"arch": "amd64", "source": "glibc", "source_version": "2.36-9"},
        "zlib1g": {"arch": "amd64", "source": "zlib", "source_version": "1:1.2.13"},
    }

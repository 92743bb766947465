"""scan:NAME end to end: ECR scanning against moto, the offline OSV backend on the fixture image,
the ignore list, the report, and the exit codes (0 passed, 1 gate failed, 2 scan not done)."""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import yaml
from helpers import BUILD_TAG, Project, assert_ok, repo_of, use_ecr_registry
from services import LocalRegistry, MotoServer

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_config")]

HIGH = {"name": "CVE-2024-0001", "severity": "HIGH", "uri": "https://ubuntu.com/security/CVE-2024-0001",
        "attributes": [{"key": "package_name", "value": "openssl"}, {"key": "package_version", "value": "3.0.2"}]}
LOW = {"name": "CVE-2024-0002", "severity": "LOW", "uri": "u",
       "attributes": [{"key": "package_name", "value": "zlib"}, {"key": "package_version", "value": "1.2"}]}


def report(project: Project, name: str = "alpha") -> dict[str, Any]:
    return yaml.safe_load((project.root / "build" / "reports" / f"{name}-scan.yaml").read_text())


# -- ECR (moto) -------------------------------------------------------------------------------------

@pytest.fixture
def pushed(project: Project, moto: MotoServer, registry: LocalRegistry) -> tuple[Project, str]:
    """alpha pushed to the data plane and recorded in moto's ECR, as a real ECR push would be."""
    ecr = moto.client("ecr")
    repo = repo_of(project, "alpha")
    ecr.create_repository(repositoryName=repo)
    use_ecr_registry(project, moto.url, registry.host, deployment="alpha")
    project.update_yaml("pipeline.yaml", lambda c: c.update(scan={"backend": "ecr", "timeout": 2, "poll": 0.2}))
    assert_ok(project.run("push:alpha", "deployment=alpha"))
    media_type, text, digest = registry.manifest(repo, BUILD_TAG)
    ecr.put_image(repositoryName=repo, imageManifest=text, imageManifestMediaType=media_type,
                  imageTag=BUILD_TAG, imageDigest=digest)
    return project, digest


def scan_results(moto: MotoServer, project: Project, digest: str, status: str, findings: list[dict]) -> None:
    """What ECR's scan will answer for this image (moto's static scan results)."""
    result = {"repositoryName": repo_of(project, "alpha"), "registryId": "123456789012",
              "imageId": {"imageDigest": digest}, "imageScanStatus": {"status": status, "description": status},
              "imageScanFindings": {"findings": findings}}
    answer = requests.post(f"{moto.url}/moto-api/static/ecr/scan-finding-results",
                           json={"results": [result], "region": "us-east-1"}, timeout=10)
    assert answer.status_code in (200, 201), answer.text


def test_ecr_findings_fail_the_gate_with_exit_1_and_a_report(pushed: tuple[Project, str], moto: MotoServer) -> None:
    project, digest = pushed
    scan_results(moto, project, digest, "COMPLETE", [HIGH, LOW])
    result = project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 1, result.output[-3000:]
    assert "gate failed" in result.output and "CVE-2024-0001" in result.output and "Traceback" not in result.output
    doc = report(project)
    assert doc["passed"] is False and doc["target"] == digest and doc["backend"] == "ecr"
    assert [f["id"] for f in doc["findings"]] == ["CVE-2024-0001"]  # LOW is below min_severity (MEDIUM)
    assert doc["findings"][0]["package"] == "openssl"
    assert "scan:alpha" in project.run("scan:alpha", "deployment=alpha").ran  # a failed gate stays stale


def test_ecr_clean_scan_passes_and_is_then_up_to_date(pushed: tuple[Project, str], moto: MotoServer) -> None:
    project, digest = pushed
    scan_results(moto, project, digest, "COMPLETE", [LOW])
    assert_ok(project.run("scan:alpha", "deployment=alpha"))
    assert report(project)["passed"] is True
    again = project.run("scan:alpha", "deployment=alpha")
    assert "scan:alpha" in again.uptodate
    assert "passed" in project.info("scan:alpha", "deployment=alpha").output


@pytest.mark.parametrize(("status", "words"), [("IN_PROGRESS", "still IN_PROGRESS"), ("FAILED", "ended FAILED")])
def test_scan_that_cannot_be_done_exits_2_and_never_passes(
    pushed: tuple[Project, str], moto: MotoServer, status: str, words: str
) -> None:
    project, digest = pushed
    scan_results(moto, project, digest, status, [])
    result = project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 2, result.output[-3000:]
    assert words in result.output and "Traceback" not in result.output
    assert not (project.root / "build" / "reports" / "alpha-scan.yaml").exists()


def test_ecr_scan_before_any_push_exits_2(project: Project, moto: MotoServer, registry: LocalRegistry) -> None:
    use_ecr_registry(project, moto.url, registry.host, deployment="alpha")
    project.update_yaml("pipeline.yaml", lambda c: c.update(scan={"backend": "ecr"}))
    assert_ok(project.run("build:alpha", "deployment=alpha"))
    result = project.run("-s", "scan:alpha", "deployment=alpha")  # -s: this task alone, not its push
    assert result.rc == 2 and "run `doit push:alpha` first" in result.output, result.output[-2000:]


# -- offline OSV on the fixture image -----------------------------------------------------------

def advisory(fixed: str) -> dict[str, Any]:
    return {"id": "GHSA-test-0001", "aliases": ["CVE-2024-1111"], "database_specific": {"severity": "HIGH"},
            "affected": [{"package": {"ecosystem": "PyPI", "name": "foo-bar"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}


@pytest.fixture
def osv_project(project: Project) -> Project:
    """alpha carries a Python package foo-bar 1.2.3 (a dist-info dir is all the inventory reads)."""
    project.append("alpha/Dockerfile.custom", "RUN mkdir -p /opt/envs/x/lib/python3.11/site-packages/Foo_Bar-1.2.3.dist-info\n")
    project.write("osv/GHSA-test-0001.json", json.dumps(advisory("1.3.0")))
    project.update_yaml("pipeline.yaml", lambda c: c.update(scan={"backend": "osv", "osv": "osv"}))
    return project


def test_osv_match_fails_the_gate_and_an_ignore_entry_passes_it(osv_project: Project) -> None:
    failed = osv_project.run("scan:alpha", "deployment=alpha")
    assert failed.rc == 1, failed.output[-3000:]
    finding = report(osv_project)["findings"][0]
    assert (finding["id"], finding["package"], finding["installed"], finding["fixed"]) == (
        "CVE-2024-1111", "foo-bar", "1.2.3", "1.3.0")

    osv_project.write("ignore.yaml", "- {id: GHSA-test-0001, reason: 'accepted until the 1.3 rollout', expires: 2099-01-01}\n"
                                     "- {id: CVE-1999-0001, reason: stale, expires: 2000-01-01}\n")
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ignore="ignore.yaml"))
    passed = osv_project.run("scan:alpha", "deployment=alpha")
    assert_ok(passed)
    doc = report(osv_project)
    assert doc["passed"] and doc["findings"][0]["ignored"].startswith("accepted")
    assert [e["id"] for e in doc["ignore_file"]["expired"]] == ["CVE-1999-0001"]
    assert [e["id"] for e in doc["ignore_file"]["unknown_ids"]] == ["CVE-1999-0001"]
    assert "expired on 2000-01-01" in passed.output


def test_osv_expired_ignore_no_longer_ignores(osv_project: Project) -> None:
    osv_project.write("ignore.yaml", "- {id: CVE-2024-1111, reason: was fine, expires: 2001-01-01}\n")
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ignore="ignore.yaml"))
    result = osv_project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 1 and "expired on 2001-01-01" in result.output, result.output[-2000:]


def test_fixed_version_installed_passes(osv_project: Project) -> None:
    osv_project.write("osv/GHSA-test-0001.json", json.dumps(advisory("1.2.3")))
    assert_ok(osv_project.run("scan:alpha", "deployment=alpha"))
    assert report(osv_project)["findings"] == []


def test_unreachable_osv_download_exits_2(osv_project: Project) -> None:
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(osv="http://127.0.0.1:1/osv.zip"))
    result = osv_project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 2 and "cannot download" in result.output and "Traceback" not in result.output, result.output[-2000:]

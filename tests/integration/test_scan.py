"""scan:NAME end to end: ECR scanning against moto, the offline OSV backend on the fixture image,
the ignore list, the report, and the exit codes (0 passed, 1 gate failed, 2 scan not done)."""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import yaml
from helpers import BUILD_TAG, PROMOTED_TAG, Project, assert_ok, custom_dockerfile, line_with, repo_of, use_ecr_registry
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


def scan_results(moto: MotoServer, project: Project, digest: str, status: str, findings: list[dict],
                 tag: str | None = None) -> None:
    """What ECR's scan will answer for this image (moto's static scan results)."""
    result = {"repositoryName": repo_of(project, "alpha"), "registryId": "123456789012",
              "imageId": {"imageDigest": digest, **({"imageTag": tag} if tag else {})},
              "imageScanStatus": {"status": status, "description": status},
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
    doc = report(project)
    assert doc["passed"] is True and doc["gated_digest"] == doc["findings_digest"] == digest
    assert doc["findings_image"].endswith(f"/{repo_of(project, 'alpha')}@{digest}")
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


def older_image_at_promoted_tag(moto: MotoServer, registry: LocalRegistry, project: Project) -> str:
    """Another image (an older build, say) in ECR at the promoted tag, with clean findings; its digest."""
    repo = repo_of(project, "alpha")
    media_type, text, _ = registry.manifest(repo, BUILD_TAG)
    other = json.dumps(json.loads(text) | {"annotations": {"pipeline.tests": "an older image"}})
    digest = "sha256:" + hashlib.sha256(other.encode()).hexdigest()
    moto.client("ecr").put_image(repositoryName=repo, imageManifest=other, imageManifestMediaType=media_type,
                                 imageTag=PROMOTED_TAG, imageDigest=digest)
    scan_results(moto, project, digest, "COMPLETE", [], tag=PROMOTED_TAG)
    return digest


@pytest.mark.parametrize("fallback", [False, True])
def test_a_deleted_digest_never_passes_on_another_images_findings(
    pushed: tuple[Project, str], moto: MotoServer, registry: LocalRegistry, fallback: bool
) -> None:
    project, digest = pushed
    repo = repo_of(project, "alpha")
    older = older_image_at_promoted_tag(moto, registry, project)
    moto.client("ecr").batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])  # a lifecycle rule
    if fallback:
        project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ecr={"allow_tag_fallback": True}))
    result = project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 2, result.output[-3000:]
    line = line_with(result.output, f"{repo}@{digest}", "push it again", "lifecycle")
    assert line, result.output[-3000:]
    if fallback:  # the tag names another image: refused, and said so on the same line
        assert f"{repo}:{PROMOTED_TAG} is {repo}@{older}, another image" in line, line
    assert "gate: passed" not in result.output and "{'" not in result.output and "Traceback" not in result.output
    assert not (project.root / "build" / "reports" / "alpha-scan.yaml").exists()
    assert "scan:alpha" in project.run("scan:alpha", "deployment=alpha").ran  # never up to date


def test_an_image_ecr_never_saw_is_named_repo_at_digest(pushed: tuple[Project, str], moto: MotoServer) -> None:
    project, digest = pushed
    repo = repo_of(project, "alpha")
    moto.client("ecr").batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ecr={"allow_tag_fallback": True}))
    result = project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 2, result.output[-3000:]
    line = line_with(result.output, f"{repo}@{digest}", "push it again")
    assert line and f"nor a tag {repo}:{PROMOTED_TAG}" in line, result.output[-3000:]
    assert "{'" not in result.output and "imageTag" not in result.output, result.output[-3000:]


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
    result = osv_project.run("scan:alpha", "deployment=alpha")
    assert_ok(result)
    doc = report(osv_project)
    assert doc["findings"] == [] and doc["gated_digest"] == doc["findings_digest"] == doc["target"]
    assert doc["findings_digest"].startswith("sha256:") and doc["findings_image"] == doc["image"]
    assert doc["inventory"] == {"packages": 1, "dpkg": 0, "python": 1}
    assert "1 packages inventoried (0 dpkg, 1 Python)" in result.output


def test_nothing_inventoried_could_not_be_scanned_unless_allowed(osv_project: Project) -> None:
    result = osv_project.run("scan:beta", "deployment=beta")  # beta: busybox, no dpkg, no Python
    assert result.rc == 2, result.output[-3000:]
    line = line_with(result.output, "0 packages inventoried", "scan.require_inventory: false")
    assert line and "build/manifests/beta.yaml" in line, result.output[-3000:]
    assert "gate: passed" not in result.output

    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(require_inventory=False))
    allowed = osv_project.run("scan:beta", "deployment=beta")
    assert_ok(allowed)
    assert "0 packages inventoried (0 dpkg, 0 Python)" in allowed.output
    assert report(osv_project, "beta")["inventory"]["packages"] == 0


def test_an_invalid_ignore_date_is_a_config_error(osv_project: Project) -> None:
    osv_project.write("ignore.yaml", "- {id: CVE-2024-1111, reason: r, expires: 2099-01-01}\n"
                                     "- {id: CVE-2024-2222, reason: r, expires: soon}\n")
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ignore="ignore.yaml"))
    result = osv_project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 3, result.output[-3000:]
    assert line_with(result.output, "ignore.yaml:2", "[1].expires", "must be a date"), result.output[-3000:]
    assert "Traceback" not in result.output and not result.ran


# -- Debian: advisories name the source package; dpkg lists the binaries -----------------------------

DEBIAN = (
    "RUN mkdir -p /var/lib/dpkg /usr/lib && printf '"
    "Package: libc6\\nStatus: install ok installed\\nSource: glibc\\nVersion: 2.36-9+deb12u1\\n\\n"
    "Package: libc-bin\\nStatus: install ok installed\\nSource: glibc\\nVersion: 2.36-9+deb12u1\\n\\n"
    "Package: zlib1g\\nStatus: install ok installed\\nSource: zlib (1:1.2.13.dfsg-1)\\nVersion: 1:1.2.13.dfsg-1+b1\\n"
    "' > /var/lib/dpkg/status && printf 'ID=debian\\nVERSION_ID=\"12\"\\n' > /usr/lib/os-release"
)


def debian_advisory(pid: str, source: str, **affected: Any) -> dict[str, Any]:
    return {"id": pid, "aliases": [f"CVE-{pid[4:]}"], "database_specific": {"severity": "HIGH"},
            "affected": [{"package": {"ecosystem": "Debian:12", "name": source}, **affected}]}


def test_debian_advisories_match_the_source_of_installed_binaries(project: Project) -> None:
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", DEBIAN))
    project.write("osv/DSA-2024-0001.json", json.dumps(debian_advisory(
        "DSA-2024-0001", "glibc", ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]}])))
    project.write("osv/DSA-2024-0002.json", json.dumps(debian_advisory("DSA-2024-0002", "zlib", versions=["1:1.2.13.dfsg-1"])))
    project.update_yaml("pipeline.yaml", lambda c: c.update(scan={"backend": "osv", "osv": "osv"}))
    result = project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 1, result.output[-3000:]
    findings = {f["package"]: f for f in report(project)["findings"]}
    assert set(findings) == {"glibc", "zlib"}, findings
    assert (findings["glibc"]["installed"], findings["glibc"]["fixed"], findings["glibc"]["binaries"]) == (
        "2.36-9+deb12u1", "2.36-9+deb12u4", ["libc-bin 2.36-9+deb12u1", "libc6 2.36-9+deb12u1"])
    assert findings["zlib"]["installed"] == "1:1.2.13.dfsg-1"  # the source's version, not the binNMU's
    assert findings["zlib"]["binaries"] == ["zlib1g 1:1.2.13.dfsg-1+b1"]
    assert "(binaries: libc-bin, libc6)" in result.output
    assert "(first: HIGH CVE-2024-0001 in glibc)" in result.output


# -- Ubuntu CVE status: looked up only for findings the policy keeps; its URL is part of the result ----

class Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.calls.append(self.path)  # type: ignore[attr-defined]
        cve = self.path.rsplit("/", 1)[-1].removesuffix(".json")
        body = json.dumps({"id": cve, "packages": [{"name": "foo-bar", "statuses": [
            {"release_codename": "noble", "status": "needed", "description": ""}]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ubuntu_servers() -> Iterator[list[ThreadingHTTPServer]]:
    servers = []
    for _ in range(2):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        httpd.calls = []  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    yield servers
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_ubuntu_lookups_only_for_kept_findings_and_its_url_reruns_the_scan(
    osv_project: Project, ubuntu_servers: list[ThreadingHTTPServer]
) -> None:
    medium = advisory("1.3.0") | {"id": "GHSA-test-0002", "aliases": ["CVE-2024-2222"],
                                  "database_specific": {"severity": "MEDIUM"}}
    low = advisory("1.3.0") | {"id": "GHSA-test-0003", "aliases": ["CVE-2024-3333"], "database_specific": {"severity": "LOW"}}
    osv_project.write("osv/GHSA-test-0001.json", json.dumps(medium))
    osv_project.write("osv/GHSA-test-0003.json", json.dumps(low))
    first, second = (f"http://127.0.0.1:{s.server_address[1]}/security/cves" for s in ubuntu_servers)
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(ubuntu={"release": "noble", "base_url": first}))
    assert_ok(osv_project.run("scan:alpha", "deployment=alpha"))
    assert ubuntu_servers[0].calls == ["/security/cves/CVE-2024-2222.json"]  # not the LOW one min_severity drops
    assert report(osv_project)["findings"][0]["status"] == "noble: needed"
    assert "scan:alpha" in osv_project.run("scan:alpha", "deployment=alpha").uptodate

    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"]["ubuntu"].update(base_url=second))
    assert "scan.ubuntu.base_url" in osv_project.info("scan:alpha", "deployment=alpha").output
    rerun = osv_project.run("scan:alpha", "deployment=alpha")
    assert_ok(rerun)
    assert "scan:alpha" in rerun.ran and ubuntu_servers[1].calls == ["/security/cves/CVE-2024-2222.json"]


def test_unreachable_osv_download_exits_2(osv_project: Project) -> None:
    osv_project.update_yaml("pipeline.yaml", lambda c: c["scan"].update(osv="http://127.0.0.1:1/osv.zip"))
    result = osv_project.run("scan:alpha", "deployment=alpha")
    assert result.rc == 2 and "cannot download" in result.output and "Traceback" not in result.output, result.output[-2000:]

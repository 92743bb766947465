"""deps: offline OSV matching of pinned requirements and the expiring ignore list."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipeline import config
from pipeline.errors import ScanIncomplete
from pipeline.hashing import FileHasher
from pipeline.settings import Settings
from pipeline.stages import sscan
from pipeline.stages.sscan import tool_run

ADVISORIES = [
    {"id": "EX-1", "aliases": ["CVE-2026-1"], "affected": [{"package": {"ecosystem": "PyPI", "name": "example-pkg"},
     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}]}]}]},
    {"id": "EX-2", "affected": [{"package": {"ecosystem": "PyPI", "name": "lastpkg"},
     "ranges": [{"type": "SEMVER", "events": [{"introduced": "2.0"}, {"last_affected": "2.3"}]}]}]},
    {"id": "EX-3", "affected": [{"package": {"ecosystem": "PyPI", "name": "listed"}, "versions": ["0.9"]}]},
    {"id": "EX-4", "affected": [{"package": {"ecosystem": "npm", "name": "example-pkg"}, "versions": ["1.0.0"]}]},
]


def project(tmp_path: Path, pins: str, ignore: list[dict] | None = None) -> Settings:
    deployments = tmp_path / "deployments"
    osv = deployments / "osv"
    osv.mkdir(parents=True)
    for adv in ADVISORIES:
        (osv / f"{adv['id']}.json").write_text(json.dumps(adv))
    extra = {"ignore": "ignore.yaml"} if ignore is not None else {}
    (deployments / "pipeline.yaml").write_text(yaml.safe_dump(
        {"root": {"image": "scratch"}, "sscan": {"pip_audit": False, "osv": "osv", **extra}}))
    if ignore is not None:
        (deployments / "ignore.yaml").write_text(yaml.safe_dump(ignore))
    (deployments / "a").mkdir()
    (deployments / "a" / "deployment.yaml").write_text("repo: a\n")
    (deployments / "a" / "Dockerfile").write_text("FROM scratch\n")
    (deployments / "a" / "env-frozen" / "main").mkdir(parents=True)
    (deployments / "a" / "env-frozen" / "main" / "requirements.txt").write_text(pins)
    return config.load(deployments, None, tmp_path / "build")


def run(settings: Settings) -> sscan.SourceScan:
    return sscan.scan_sources(settings, FileHasher(None), "deps")


def test_ranges_last_affected_and_version_lists(tmp_path: Path) -> None:
    result = run(project(tmp_path, "Example.Pkg==1.1.9\nlastpkg==2.3\nlisted==0.9\nsafe==1.0\n"))
    assert not result.ok and not result.incomplete
    text = "\n".join(result.findings)
    assert "Example.Pkg==1.1.9 CVE-2026-1 (EX-1), fixed in 1.2.0 [osv]" in text
    assert "lastpkg==2.3 EX-2" in text and "listed==0.9 EX-3" in text
    assert len(result.findings) == 3  # not the npm advisory, not safe


def test_versions_outside_the_ranges_pass(tmp_path: Path) -> None:
    result = run(project(tmp_path, "example-pkg==1.2.0\nlastpkg==2.3.1\nlastpkg2==1.0\nlisted==1.0\n"))
    assert result.ok, result
    assert "no known vulnerabilities in 4 packages" in result.summary


def test_ignore_entries_by_alias_package_and_expiry(tmp_path: Path) -> None:
    today = dt.date.today()
    ignore = [
        {"id": "cve-2026-1", "reason": "unused code path", "expires": str(today + dt.timedelta(days=1)),
         "package": "Example.Pkg"},
        {"id": "EX-2", "reason": "old", "expires": str(today - dt.timedelta(days=1))},
        {"id": "EX-404", "reason": "long fixed", "expires": str(today + dt.timedelta(days=9))},
    ]
    result = run(project(tmp_path, "Example.Pkg==1.0\nlastpkg==2.1\n", ignore))
    assert [f.split(" [")[0].split(": ", 1)[1] for f in result.findings] == ["lastpkg==2.1 EX-2"]
    notes = "\n".join(result.notes)
    assert "ignored: " in notes and "(unused code path)" in notes
    assert "ignore entry EX-2 in " in notes and f"expired on {today - dt.timedelta(days=1)}" in notes
    assert "ignore entry EX-404 in " in notes and "matched no finding" in notes


def test_no_source_at_all_is_incomplete(tmp_path: Path) -> None:
    settings = project(tmp_path, "x==1\n")
    settings = replace(settings, sscan=replace(settings.sscan, osv=None))
    result = run(settings)
    assert not result.ok and result.incomplete and "no vulnerability source" in result.summary


def test_freshness_follows_the_key_and_a_failure_stays_stale(tmp_path: Path) -> None:
    settings = project(tmp_path, "example-pkg==1.0\n")
    hasher = FileHasher(None)
    assert not sscan.scanner_freshness(settings, hasher, "deps").current
    run(settings)
    fresh = sscan.scanner_freshness(settings, hasher, "deps")
    assert not fresh.current and "failed last time" in fresh.reason
    (settings.deployments_dir / "a" / "env-frozen" / "main" / "requirements.txt").write_text("example-pkg==1.2\n")
    assert "changed: " in sscan.scanner_freshness(settings, hasher, "deps").reason
    assert run(settings).ok
    assert sscan.scanner_freshness(settings, hasher, "deps").current


def test_no_source_hint_fits_the_settings(tmp_path: Path) -> None:
    settings = project(tmp_path, "x==1\n")
    settings = replace(settings, sscan=replace(settings.sscan, osv=None))  # pip_audit is already false
    with pytest.raises(ScanIncomplete) as caught:
        sscan.check(settings, FileHasher(None), "deps")
    message = str(caught.value)
    assert "no vulnerability source" in message and "set sscan.osv" in message, message
    assert "sscan.pip_audit: false" not in message, message  # it is false already


# The last line pip-audit prints when its proxy refuses (HTTPS_PROXY=http://127.0.0.1:1), as recorded here.
PROXY_REFUSED = (
    "requests.exceptions.ProxyError: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: "
    "/pypi/requests/2.31.0/json (Caused by ProxyError('Unable to connect to proxy', NewConnectionError(\"HTTPSConnection"
    "(host='127.0.0.1', port=1): Failed to establish a new connection: [Errno 111] Connection refused\")))"
)
DIRECT_TIMEOUT = (
    "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: "
    "/pypi/x/1/json (Caused by ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f>, "
    "'Connection to pypi.org timed out. (connect timeout=15)'))"
)


@pytest.mark.parametrize(("output", "expected"), [
    (PROXY_REFUSED, "cannot reach pypi.org:443 through the proxy 127.0.0.1:1 (connection refused)"),
    (DIRECT_TIMEOUT, "cannot reach pypi.org:443 (timed out)"),
    ("ERROR: something else entirely", ""),
])
def test_an_unreachable_service_is_named_with_host_and_port(output: str, expected: str) -> None:
    assert tool_run.unreachable("Traceback (most recent call last):\n  ...\n" + output) == expected


def test_a_long_error_line_is_shortened_at_a_word() -> None:
    text = tool_run._condensed("error: " + " ".join(f"word{i}" for i in range(200)))
    assert text.endswith("(the whole output is in the task's log)")
    assert text.split(" … ")[0].split()[-1].startswith("word") and len(text) < 400

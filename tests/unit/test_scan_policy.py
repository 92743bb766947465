"""Scan policy and OSV matching: severities, ignore entries that expire, the gate, version ranges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.findings.model import Finding, normalise_severity
from pipeline.findings.osv import OsvDatabase, Package, affects
from pipeline.findings.policy import IgnoreEntry, judge, load_ignores
from pipeline.findings.report import document, gate_failure, summary
from pipeline.stages.manifest import parse_dpkg_sources, parse_dpkg_status

TODAY = dt.date(2026, 11, 30)


def f(fid: str, severity: str, package: str = "pkg") -> Finding:
    return Finding(id=fid, severity=severity, package=package, installed="1.0", source="osv")


@pytest.mark.parametrize(
    ("findings", "ignores", "passed", "failing"),
    [
        ([], [], True, []),
        ([f("CVE-1", "LOW"), f("CVE-2", "MEDIUM")], [], True, []),
        ([f("CVE-1", "HIGH")], [], False, ["CVE-1"]),
        ([f("CVE-1", "CRITICAL")], [], False, ["CVE-1"]),
        ([f("CVE-1", "HIGH")], [IgnoreEntry("CVE-1", "accepted", dt.date(2027, 1, 1))], True, []),
        ([f("CVE-1", "HIGH")], [IgnoreEntry("CVE-1", "accepted", None)], True, []),
        ([f("CVE-1", "HIGH")], [IgnoreEntry("CVE-1", "old", dt.date(2026, 11, 29))], False, ["CVE-1"]),
        ([f("CVE-1", "HIGH")], [IgnoreEntry("CVE-1", "today is fine", TODAY)], True, []),
        ([f("CVE-1", "HIGH", "a")], [IgnoreEntry("CVE-1", "other package", None, "b")], False, ["CVE-1"]),
        ([f("CVE-1", "HIGH", "a")], [IgnoreEntry("cve-1", "case", None, "a")], True, []),
    ],
)
def test_gate(findings: list[Finding], ignores: list[IgnoreEntry], passed: bool, failing: list[str]) -> None:
    verdict = judge(findings, min_severity="MEDIUM", fail_on=["CRITICAL", "HIGH"], ignores=ignores, today=TODAY)
    assert verdict.passed is passed
    assert [x.id for x in verdict.failing] == failing


def test_min_severity_drops_low_and_reports_expired_and_unknown_ids() -> None:
    ignores = [IgnoreEntry("CVE-9", "gone", dt.date(2020, 1, 1)), IgnoreEntry("CVE-2", "ok", None)]
    verdict = judge([f("CVE-1", "LOW"), f("CVE-2", "HIGH")], min_severity="MEDIUM", fail_on=["HIGH"],
                    ignores=ignores, today=TODAY)
    assert [x.id for x in verdict.kept] == ["CVE-2"] and verdict.kept[0].ignored == "ok"
    assert [e.id for e in verdict.expired] == ["CVE-9"] and [e.id for e in verdict.unused] == ["CVE-9"]
    text = summary("scan:x", verdict, ["HIGH"])
    assert "expired on 2020-01-01" in text and "matches no finding" in text and "gate: passed" in text
    doc = document({"deployment": "x"}, verdict)
    assert doc["passed"] and doc["ignored"] == 1 and doc["ignore_file"]["expired"][0]["id"] == "CVE-9"


def test_fail_on_can_include_a_severity_below_the_minimum() -> None:
    verdict = judge([f("CVE-1", "LOW")], min_severity="HIGH", fail_on=["LOW"], ignores=[], today=TODAY)
    assert not verdict.passed


def test_severity_names() -> None:
    assert [normalise_severity(s) for s in ("moderate", "Important", "", "weird", "critical")] == [
        "MEDIUM", "HIGH", "UNDEFINED", "UNDEFINED", "CRITICAL"]


def test_ignore_file_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "ignore.yaml"
    path.write_text("- {id: CVE-1, reason: x, expires: soon}\n")
    with pytest.raises(ConfigError, match=r"ignore.yaml:1: key '\[0\].expires' must be a date"):
        load_ignores(path)
    path.write_text("- {id: CVE-1}\n")
    with pytest.raises(ConfigError, match=r"missing key '\[0\].reason'"):
        load_ignores(path)
    path.write_text("- {id: CVE-1, reason: r, expires: 2027-02-01, package: openssl}\n")
    assert load_ignores(path) == [IgnoreEntry("CVE-1", "r", dt.date(2027, 2, 1), "openssl")]


def rng(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict:
    return {"ranges": [{"type": kind, "events": list(events)}]}


@pytest.mark.parametrize(
    ("affected", "version", "ecosystem", "expected"),
    [
        (rng({"introduced": "0"}, {"fixed": "1.2.0"}), "1.1.9", "PyPI", "1.2.0"),
        (rng({"introduced": "0"}, {"fixed": "1.2.0"}), "1.2.0", "PyPI", None),
        (rng({"introduced": "0"}, {"fixed": "1.2.0"}), "1.2.0rc1", "PyPI", "1.2.0"),  # PEP 440: rc < final
        (rng({"introduced": "1.0"}, {"fixed": "1.2"}), "0.9", "PyPI", None),
        (rng({"introduced": "2.0"}, {"last_affected": "2.5"}), "2.5", "PyPI", ""),
        (rng({"introduced": "2.0"}, {"last_affected": "2.5"}), "2.5.post1", "PyPI", None),
        (rng({"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}), "1.5", "PyPI", None),
        (rng({"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}), "2.0.5", "PyPI", "2.1"),
        (rng({"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}), "3.0.11-1~deb12u1", "Debian:12", "3.0.11-1~deb12u2"),
        (rng({"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}), "3.0.11-1", "Debian:12", None),  # ~ sorts before
        (rng({"introduced": "0"}, {"fixed": "2:1.0-1"}), "1:9.9-1", "Debian:12", "2:1.0-1"),  # epochs
        ({"versions": ["0.5.0"]}, "0.5.0", "PyPI", ""),
        ({"versions": ["0.5.0"]}, "0.5.1", "PyPI", None),
        (rng({"introduced": "0"}, {"fixed": "1.2.0"}), "not-a-version", "PyPI", None),
    ],
)
def test_version_ranges(affected: dict, version: str, ecosystem: str, expected: str | None) -> None:
    assert affects(affected, version, ecosystem) == expected


def test_database_matches_names_ecosystems_and_prefers_cve_ids(tmp_path: Path) -> None:
    (tmp_path / "py.json").write_text(
        '{"id": "GHSA-a", "aliases": ["CVE-2024-1"], "database_specific": {"severity": "MODERATE"},'
        ' "affected": [{"package": {"ecosystem": "PyPI", "name": "Foo_Bar"},'
        ' "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}')
    (tmp_path / "deb.json").write_text(
        '{"id": "DSA-1", "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"},'
        ' "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9"}]}]}]}')
    (tmp_path / "broken.json").write_text("{not json")
    db = OsvDatabase.load(tmp_path)
    found = db.match([
        Package("PyPI", "foo-bar", "1.0", where="/opt/envs/x"),
        Package("Debian:12", "openssl", "1.0"),  # the advisory is for Debian 11 only
        Package("Debian:11", "libssl1.1", "1.0", source="openssl"),
    ])
    assert [(x.id, x.package, x.severity, x.fixed, x.binaries) for x in found] == [
        ("CVE-2024-1", "foo-bar", "MEDIUM", "2.0", ()), ("DSA-1", "openssl", "UNDEFINED", "9", ("libssl1.1 1.0",))]
    assert found[0].aliases == ("GHSA-a",)


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        OsvDatabase.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no OSV advisories"):
        OsvDatabase.load(tmp_path)


# -- Debian: advisories name source packages; the dpkg database lists binaries --------------------

DPKG_STATUS = """\
Package: libc6
Status: install ok installed
Source: glibc
Version: 2.36-9+deb12u1

Package: libc-bin
Status: install ok installed
Source: glibc
Version: 2.36-9+deb12u1

Package: zlib1g
Status: install ok installed
Source: zlib (1:1.2.13.dfsg-1)
Version: 1:1.2.13.dfsg-1+b1

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
Source: bash (5.2.15-2)

Package: openssl
Status: install ok installed
Version: 3.0.11-1~deb12u2

Package: libssl3
Status: deinstall ok config-files
Source: openssl
Version: 3.0.11-1~deb12u1
"""


def test_dpkg_sources_name_and_binnmu_version() -> None:
    assert parse_dpkg_sources(DPKG_STATUS) == {
        "bash": {"source": "bash", "version": "5.2.15-2"},
        "libc-bin": {"source": "glibc", "version": "2.36-9+deb12u1"},
        "libc6": {"source": "glibc", "version": "2.36-9+deb12u1"},
        "zlib1g": {"source": "zlib", "version": "1:1.2.13.dfsg-1"},
    }  # openssl: no Source field, so source = binary; libssl3 is not installed


def debian(pid: str, source: str, **affected: object) -> dict:
    return {"id": pid, "aliases": [f"CVE-{pid}"], "database_specific": {"severity": "HIGH"},
            "affected": [{"package": {"ecosystem": "Debian:12", "name": source}, **affected}]}


def inventory_of(status: str) -> list[Package]:
    sources = parse_dpkg_sources(status)
    return [Package("Debian:12", name, version, sources.get(name, {}).get("source", ""),
                    source_version=sources.get(name, {}).get("version", ""))
            for name, version in parse_dpkg_status(status).items()]


@pytest.mark.parametrize(
    ("advisory", "expected"),
    [
        # the case: libc6 2.36-9+deb12u1, glibc fixed in 2.36-9+deb12u4
        (debian("2024-1", "glibc", ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]}]),
         ("CVE-2024-1", "glibc", "2.36-9+deb12u1", "2.36-9+deb12u4", ("libc-bin 2.36-9+deb12u1", "libc6 2.36-9+deb12u1"))),
        (debian("2024-2", "glibc", ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u1"}]}]),
         None),  # fixed in the installed source version
        # binNMU: the advisory lists the source's version, which the binary's own (…+b1) is not
        (debian("2024-3", "zlib", versions=["1:1.2.13.dfsg-1"]),
         ("CVE-2024-3", "zlib", "1:1.2.13.dfsg-1", "", ("zlib1g 1:1.2.13.dfsg-1+b1",))),
        (debian("2024-4", "bash", versions=["5.2.15-2"]), ("CVE-2024-4", "bash", "5.2.15-2", "", ("bash 5.2.15-2+b2",))),
        # a binary without Source: field is its own source
        (debian("2024-5", "openssl", ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]),
         ("CVE-2024-5", "openssl", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1", ("openssl 3.0.11-1~deb12u2",))),
        # advisories are never matched by a binary's name
        (debian("2024-6", "libc6", versions=["2.36-9+deb12u1"]), None),
    ],
)
def test_debian_advisories_match_by_source_and_report_binaries(advisory: dict, expected: tuple | None) -> None:
    found = OsvDatabase([advisory]).match(inventory_of(DPKG_STATUS))
    assert [(x.id, x.package, x.installed, x.fixed, x.binaries) for x in found] == ([expected] if expected else [])


def test_an_ignore_entry_may_name_the_source_or_a_binary() -> None:
    finding = Finding("CVE-1", "HIGH", "glibc", binaries=("libc6 2.36-9", "libc-bin 2.36-9"))
    for package in ("glibc", "libc6", "libc-bin"):
        assert judge([finding], min_severity="LOW", fail_on=["HIGH"], ignores=[IgnoreEntry("CVE-1", "r", None, package)],
                     today=TODAY).passed
    assert not judge([finding], min_severity="LOW", fail_on=["HIGH"], ignores=[IgnoreEntry("CVE-1", "r", None, "zlib1g")],
                     today=TODAY).passed
    assert "(binaries: libc6, libc-bin)" in summary("t", judge([finding], min_severity="LOW", fail_on=["HIGH"], ignores=[]),
                                                    ["HIGH"])


def test_gate_message_names_the_finding_the_console_lists_first() -> None:
    findings = [f("CVE-2024-9", "HIGH", "openssl"), f("CVE-2024-5", "CRITICAL", "zlib"), f("CVE-2024-1", "HIGH", "curl"),
                f("CVE-2023-1", "CRITICAL", "ignored-one")]
    verdict = judge(findings, min_severity="MEDIUM", fail_on=["CRITICAL", "HIGH"],
                    ignores=[IgnoreEntry("CVE-2023-1", "accepted", None)], today=TODAY)
    assert [x.id for x in verdict.failing] == ["CVE-2024-5", "CVE-2024-1", "CVE-2024-9"]
    first_listed = next(line for line in summary("t", verdict, ["CRITICAL", "HIGH"]).splitlines() if "FAIL" in line)
    assert "CVE-2024-5" in first_listed and "zlib" in first_listed
    assert "(first: CRITICAL CVE-2024-5 in zlib)" in gate_failure(verdict, ["CRITICAL", "HIGH"])
    assert document({}, verdict)["failing"] == ["CVE-2024-5", "CVE-2024-1", "CVE-2024-9"]


def test_a_bad_ignore_file_is_an_error_when_the_configuration_loads(tmp_path: Path) -> None:
    from pipeline import config

    deployments = tmp_path / "deployments"
    (deployments / "a").mkdir(parents=True)
    (deployments / "a" / "deployment.yaml").write_text("repo: a\n")
    (deployments / "a" / "Dockerfile").write_text("FROM scratch\n")
    (deployments / "pipeline.yaml").write_text(
        "root: {image: scratch}\nscan: {ignore: scan-ignore.yaml, require_inventory: false, ecr: {allow_tag_fallback: true}}\n")
    (deployments / "scan-ignore.yaml").write_text("- {id: CVE-1, reason: ok, expires: 2027-01-01}\n"
                                                  "- {id: CVE-2, reason: x, expires: 2027-02-30}\n")
    with pytest.raises(ConfigError, match=r"scan-ignore.yaml:2: .*2027-02-30 is not a valid date"):
        config.load(deployments, None, tmp_path / "build")
    (deployments / "scan-ignore.yaml").write_text("- {id: CVE-2, reason: x, expires: soon}\n")
    with pytest.raises(ConfigError, match=r"scan-ignore.yaml:1: key '\[0\].expires' must be a date"):
        config.load(deployments, None, tmp_path / "build")
    (deployments / "scan-ignore.yaml").write_text("- {id: CVE-2, reason: x, expires: 2027-02-28}\n")
    scan = config.load(deployments, None, tmp_path / "build").scan
    assert (scan.require_inventory, scan.allow_tag_fallback) == (False, True)
    (deployments / "pipeline.yaml").write_text("root: {image: scratch}\nscan: {ecr: {allow_fallback: true}}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'scan.ecr.allow_fallback'"):
        config.load(deployments, None, tmp_path / "build")

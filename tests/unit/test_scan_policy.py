"""Scan policy and OSV matching: severities, ignore entries that expire, the gate, version ranges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.scan.model import Finding, normalise_severity
from pipeline.scan.osv import OsvDatabase, Package, affects
from pipeline.scan.policy import IgnoreEntry, judge, load_ignores
from pipeline.scan.report import document, summary

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
    assert [(x.id, x.package, x.severity, x.fixed) for x in found] == [
        ("CVE-2024-1", "foo-bar", "MEDIUM", "2.0"), ("DSA-1", "libssl1.1", "UNDEFINED", "9")]
    assert found[0].aliases == ("GHSA-a",)


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        OsvDatabase.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no OSV advisories"):
        OsvDatabase.load(tmp_path)

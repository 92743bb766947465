"""Ubuntu CVE status from a local HTTP server serving recorded answers in the API's documented shape."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.findings.model import Finding
from pipeline.findings.ubuntu import UbuntuCves, UbuntuSettings

# The shape of https://ubuntu.com/security/cves/CVE-….json (fields the pipeline reads, plus some it ignores).
RECORDS = {
    "CVE-2024-0001": {
        "id": "CVE-2024-0001", "priority": "medium", "status": "active",
        "packages": [{"name": "openssl", "source": "https://launchpad.net/ubuntu/+source/openssl", "statuses": [
            {"release_codename": "jammy", "status": "released", "description": "3.0.2-0ubuntu1.15", "pocket": "security"},
            {"release_codename": "noble", "status": "needed", "description": ""},
        ]}],
    },
    "CVE-2024-0002": {
        "id": "CVE-2024-0002",
        "packages": [{"name": "curl", "statuses": [
            {"release_codename": "noble", "status": "deferred", "description": "2024-03-01"}]}],
    },
}


class Handler(BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_GET(self) -> None:
        Handler.calls.append(self.path)
        cve = self.path.rsplit("/", 1)[-1].removesuffix(".json")
        if cve == "CVE-2024-0500":
            self.send_response(500)
            self.end_headers()
            return
        if cve == "CVE-2024-0408":
            time.sleep(2)
        record = RECORDS.get(cve)
        body = json.dumps(record).encode() if record else b'{"message": "not found"}'
        self.send_response(200 if record else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the "too slow" answer is written after the client gave up: a broken pipe, expected


@pytest.fixture
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.calls = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/security/cves"
    httpd.shutdown()
    httpd.server_close()


def finding(cve: str, package: str) -> Finding:
    return Finding(id=cve, severity="HIGH", package=package)


def test_statuses_for_the_release_cached_and_failures_unknown(server: str, tmp_path: Path) -> None:
    cves = UbuntuCves(UbuntuSettings("noble", server, cache_ttl=3600, parallel=4, timeout=0.5), tmp_path)
    findings = [
        finding("CVE-2024-0001", "openssl"),
        finding("CVE-2024-0001", "openssl"),  # the same CVE twice: one lookup
        finding("CVE-2024-0002", "curl"),
        finding("CVE-2024-0500", "x"),  # the server answers 500
        finding("CVE-2024-0408", "y"),  # the server is too slow
        finding("CVE-2024-0404", "z"),  # Ubuntu does not know it
        Finding(id="GHSA-xxxx", severity="LOW", package="p"),  # no CVE: no lookup
    ]
    out = cves.enrich(findings)
    assert [x.status for x in out] == [
        "noble: needed", "noble: needed", "noble: deferred", "unknown", "unknown", "noble: not listed", ""]
    assert sorted(Handler.calls).count("/security/cves/CVE-2024-0001.json") == 1

    jammy = UbuntuCves(UbuntuSettings("jammy", server, cache_ttl=3600), tmp_path)
    calls = len(Handler.calls)
    assert jammy.enrich([finding("CVE-2024-0001", "openssl")])[0].status == "jammy: released (3.0.2-0ubuntu1.15)"
    assert len(Handler.calls) == calls  # answered from the disk cache


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on return: nothing listens there


@pytest.mark.parametrize(("where", "words"), [
    ("refused", "connection to 127.0.0.1:{port} refused"),
    ("slow", "127.0.0.1:{port} did not answer within 0.5 s"),
    ("500", "127.0.0.1:{port} answered 500"),
])
def test_a_failed_lookup_says_what_failed_host_port_and_what_to_do_once(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, words: str
) -> None:
    if where == "refused":
        port = closed_port()
        base, cves = f"http://127.0.0.1:{port}/security/cves", ["CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0003"]
    else:
        port = int(server.split(":")[2].split("/")[0])
        base, cves = server, ["CVE-2024-0408"] if where == "slow" else ["CVE-2024-0500"]
    ubuntu = UbuntuCves(UbuntuSettings("noble", base, cache_ttl=0, timeout=0.5), tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.findings.ubuntu"):
        out = ubuntu.enrich([finding(cve, "openssl") for cve in cves])
    assert [x.status for x in out] == ["unknown"] * len(cves)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line for the run's lookups, not one per CVE
    text = warnings[0]
    assert words.format(port=port) in text and ", ".join(cves) in text, text
    assert "scan.ubuntu.base_url" in text and "HTTPS_PROXY" in text, text
    assert "Connection(" not in text and "[Errno" not in text, text  # no repr of urllib3's exceptions

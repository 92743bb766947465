"""Ubuntu's status of each CVE for one release, from Ubuntu's CVE JSON API (not by scraping HTML).

Answers are cached on disk with a TTL; lookups run in parallel (bounded), one
per distinct CVE; a failed lookup gives the status ``unknown``, and each distinct
problem one warning that names the host and port and what to check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline.files import write_text
from pipeline.findings.model import Finding

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ubuntu.com/security/cves"


@dataclass(frozen=True)
class UbuntuSettings:
    release: str  # codename, e.g. noble
    base_url: str = DEFAULT_BASE_URL
    cache_ttl: float = 86400.0
    parallel: int = 8
    timeout: float = 10.0


class UbuntuCves:
    def __init__(self, settings: UbuntuSettings, cache_dir: Path) -> None:
        self.settings = settings
        self.cache_dir = cache_dir

    def enrich(self, findings: Iterable[Finding]) -> list[Finding]:
        """Each finding naming a CVE gets ``status`` such as ``noble: released (1.2-3)``.

        Failed lookups give ``unknown`` and one warning per distinct problem (never one per CVE).
        """
        findings = list(findings)
        cves = sorted({f.cves[0] for f in findings if f.cves})
        with ThreadPoolExecutor(max_workers=max(1, self.settings.parallel)) as pool:
            answers = dict(zip(cves, pool.map(self._record, cves), strict=False))
        failed: dict[str, list[str]] = {}
        for cve, (_, problem) in sorted(answers.items()):
            if problem:
                failed.setdefault(problem, []).append(cve)
        for problem, which in failed.items():
            shown = ", ".join(which[:5]) + (f" and {len(which) - 5} more" if len(which) > 5 else "")
            log.warning("ubuntu: could not look up %d CVE%s (%s) at %s: %s; their status is unknown. "
                        "Check scan.ubuntu.base_url and the network or proxy (HTTPS_PROXY), or try again later",
                        len(which), "" if len(which) == 1 else "s", shown, self.settings.base_url, problem)
        out = []
        for finding in findings:
            if finding.cves:
                record = answers[finding.cves[0]][0]
                finding = finding.with_(status=self.status(record, finding.packages) if record else "unknown")
            out.append(finding)
        return out

    def status(self, record: dict[str, Any], package: str | tuple[str, ...]) -> str:
        """The release's status for the package (by name, or any of the names; the only package when just one is listed)."""
        names = {package} if isinstance(package, str) else set(package)
        release = self.settings.release
        packages = record.get("packages") or []
        chosen = [p for p in packages if p.get("name") in names] or (packages if len(packages) == 1 else [])
        texts = []
        for pkg in chosen or packages:
            for entry in pkg.get("statuses") or []:
                if entry.get("release_codename") != release:
                    continue
                text = str(entry.get("status") or "unknown")
                if entry.get("description") and text == "released":
                    text += f" ({entry['description']})"
                texts.append(text if chosen else f"{pkg.get('name')} {text}")
        if not texts:
            return f"{release}: not listed"
        return f"{release}: " + "; ".join(dict.fromkeys(texts))

    def _record(self, cve: str) -> tuple[dict[str, Any] | None, str]:
        """(Ubuntu's record of ``cve``, "") or (None, what went wrong in plain words)."""
        # One cache per base URL: answers from another source (a mirror, a fixed URL) are not reused.
        source = hashlib.sha256(self.settings.base_url.rstrip("/").encode()).hexdigest()[:12]
        cache = self.cache_dir / source / f"{cve}.json"
        try:
            if time.time() - cache.stat().st_mtime < self.settings.cache_ttl:
                return json.loads(cache.read_text()), ""
        except (OSError, ValueError):
            pass
        url = f"{self.settings.base_url.rstrip('/')}/{cve}.json"
        try:
            resp = requests.get(url, timeout=self.settings.timeout)
            if resp.status_code == 404:
                return {"packages": []}, ""
            resp.raise_for_status()
            record = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.debug("ubuntu: %s: %r", url, exc)
            return None, failure(exc, url, self.settings.timeout)
        if not isinstance(record, dict):
            return None, f"{_where(url)} answered JSON that is not a CVE record"
        write_text(cache, json.dumps(record))
        return record, ""


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def failure(exc: BaseException, url: str, timeout: float) -> str:
    """What went wrong with a request to ``url``, in plain words naming host and port (never a cut repr)."""
    where = _where(url)
    text = str(exc)
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy gave no way to {where} (check HTTPS_PROXY / HTTP_PROXY)"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with {where} failed (a certificate problem: set REQUESTS_CA_BUNDLE to the CA bundle)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection to {where} within {timeout:g} s"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{where} did not answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "refused" in text.lower():
            return f"connection to {where} refused (nothing listens there)"
        if "resolve" in text.lower() or "name or service not known" in text.lower() or "getaddrinfo" in text.lower():
            return f"cannot resolve the host name {urlsplit(url).hostname}"
        return f"cannot connect to {where}"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"{where} answered {exc.response.status_code} {exc.response.reason}".rstrip()
    if isinstance(exc, ValueError):
        return f"{where} answered something that is not JSON"
    return f"the request to {where} failed ({type(exc).__name__})"

"""Ubuntu's status of each CVE for one release, from Ubuntu's CVE JSON API (not by scraping HTML).

Answers are cached on disk with a TTL; lookups run in parallel (bounded), one
per distinct CVE; a failed lookup gives the status ``unknown`` and a warning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from pipeline.files import write_text
from pipeline.scan.model import Finding

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
        """Each finding naming a CVE gets ``status`` such as ``noble: released (1.2-3)``."""
        findings = list(findings)
        cves = sorted({f.cves[0] for f in findings if f.cves})
        with ThreadPoolExecutor(max_workers=max(1, self.settings.parallel)) as pool:
            records = dict(zip(cves, pool.map(self._record, cves), strict=False))
        out = []
        for finding in findings:
            if finding.cves:
                record = records.get(finding.cves[0])
                finding = finding.with_(status=self.status(record, finding.package) if record else "unknown")
            out.append(finding)
        return out

    def status(self, record: dict[str, Any], package: str) -> str:
        """The release's status for the package (by name; the only package when just one is listed)."""
        release = self.settings.release
        packages = record.get("packages") or []
        chosen = [p for p in packages if p.get("name") == package] or (packages if len(packages) == 1 else [])
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

    def _record(self, cve: str) -> dict[str, Any] | None:
        cache = self.cache_dir / f"{cve}.json"
        try:
            if time.time() - cache.stat().st_mtime < self.settings.cache_ttl:
                return json.loads(cache.read_text())
        except (OSError, ValueError):
            pass
        url = f"{self.settings.base_url.rstrip('/')}/{cve}.json"
        try:
            resp = requests.get(url, timeout=self.settings.timeout)
            if resp.status_code == 404:
                return {"packages": []}
            resp.raise_for_status()
            record = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("ubuntu: cannot look up %s (%s): %s; status unknown", cve, url, _short(exc))
            return None
        if not isinstance(record, dict):
            log.warning("ubuntu: unexpected answer for %s from %s; status unknown", cve, url)
            return None
        write_text(cache, json.dumps(record))
        return record


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:160] if text else type(exc).__name__

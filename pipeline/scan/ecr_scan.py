"""Findings from ECR's image scanning: start a scan when none exists, wait for it, page through findings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.errors import ScanIncomplete
from pipeline.registry.ecr import Ecr
from pipeline.scan.model import Finding, normalise_severity

log = logging.getLogger(__name__)

DONE = {"COMPLETE", "ACTIVE"}
FAILED = {"FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE"}


def ecr_findings(
    ecr: Ecr, repo: str, digest: str, *, fallback_tag: str | None, timeout: float, poll: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Finding]:
    """Every finding of the image ``digest`` (or, when ECR no longer knows it, of ``fallback_tag``).

    Raises:
        ScanIncomplete: the scan failed, timed out, or ECR could not be asked.
    """
    import botocore.exceptions  # lazily: boto3 is slow to import

    image_id: dict[str, str] = {"imageDigest": digest}
    deadline = time.monotonic() + timeout
    started = False
    while True:
        try:
            first = ecr.client.describe_image_scan_findings(
                registryId=ecr.registry.account, repositoryName=repo, imageId=image_id, maxResults=1000
            )
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ScanNotFoundException" and not started:
                _start(ecr, repo, image_id)
                started = True
                continue
            if code == "ImageNotFoundException" and fallback_tag and "imageTag" not in image_id:
                log.info("scan: ECR has no %s@%s any more; using tag %s as the old tool did", repo, digest[:19], fallback_tag)
                image_id = {"imageTag": fallback_tag}
                continue
            raise ScanIncomplete(f"ECR scan of {repo}@{image_id}: {code}: {exc.response.get('Error', {}).get('Message', '')}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ScanIncomplete(f"ECR scan of {repo}: cannot reach ECR: {exc}") from None
        status = (first.get("imageScanStatus") or {}).get("status", "")
        if status in DONE:
            return list(_all_findings(ecr, repo, image_id, first))
        if status in FAILED:
            detail = (first.get("imageScanStatus") or {}).get("description", "")
            raise ScanIncomplete(f"ECR scan of {repo}@{digest[:19]} ended {status}: {detail}".rstrip(": "))
        if time.monotonic() >= deadline:
            raise ScanIncomplete(f"ECR scan of {repo}@{digest[:19]} still {status or 'pending'} after {timeout:g} s; "
                                 "raise scan.timeout or try again later")
        log.info("scan: ECR scan of %s is %s; waiting %.0f s", repo, status or "pending", poll)
        sleep(poll)


def _start(ecr: Ecr, repo: str, image_id: dict[str, str]) -> None:
    import botocore.exceptions  # lazily: boto3 is slow to import

    try:
        ecr.client.start_image_scan(registryId=ecr.registry.account, repositoryName=repo, imageId=image_id)
        log.info("scan: started an ECR scan of %s", repo)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code != "LimitExceededException":  # scanned already today: wait for that one
            raise ScanIncomplete(f"ECR cannot start a scan of {repo}: {code}: {exc.response['Error'].get('Message', '')}") from None


def _all_findings(ecr: Ecr, repo: str, image_id: dict[str, str], page: dict[str, Any]) -> Iterator[Finding]:
    while True:
        results = page.get("imageScanFindings") or {}
        for item in results.get("findings") or []:
            yield _basic(item)
        for item in results.get("enhancedFindings") or []:
            yield from _enhanced(item)
        token = page.get("nextToken")
        if not token:
            return
        page = ecr.client.describe_image_scan_findings(
            registryId=ecr.registry.account, repositoryName=repo, imageId=image_id, maxResults=1000, nextToken=token
        )


def _basic(item: dict[str, Any]) -> Finding:
    attrs = {a.get("key"): a.get("value") for a in item.get("attributes") or []}
    return Finding(
        id=str(item.get("name") or "UNKNOWN"),
        severity=normalise_severity(item.get("severity")),
        package=str(attrs.get("package_name") or ""),
        installed=str(attrs.get("package_version") or ""),
        source="ecr",
    )


def _enhanced(item: dict[str, Any]) -> Iterator[Finding]:
    details = item.get("packageVulnerabilityDetails") or {}
    for pkg in details.get("vulnerablePackages") or [{}]:
        yield Finding(
            id=str(details.get("vulnerabilityId") or item.get("title") or "UNKNOWN"),
            severity=normalise_severity(item.get("severity")),
            package=str(pkg.get("name") or ""),
            installed=str(pkg.get("version") or ""),
            fixed=str(pkg.get("fixedInVersion") or ""),
            source="ecr",
        )

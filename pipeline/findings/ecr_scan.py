"""Findings from ECR's image scanning: start a scan when none exists, wait for it, page through findings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ScanIncomplete
from pipeline.findings.model import Finding, normalise_severity
from pipeline.registry.ecr import Ecr

log = logging.getLogger(__name__)

DONE = {"COMPLETE", "ACTIVE"}
FAILED = {"FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE"}


@dataclass(frozen=True)
class EcrScan:
    findings: list[Finding]
    digest: str  # the digest the findings are for, as ECR answered
    via: str  # how they were asked for: "digest", or "tag TAG" (scan.ecr.allow_tag_fallback)


def ecr_findings(
    ecr: Ecr, repo: str, digest: str, *, fallback_tag: str | None, timeout: float, poll: float = 5.0,
    sleep: Callable[[float], None] = time.sleep, deployment: str = "NAME",
) -> EcrScan:
    """Every finding of the image ``digest`` in ECR repository ``repo``: the findings of that digest, or none.

    With ``fallback_tag`` (scan.ecr.allow_tag_fallback), an image ECR no longer knows by digest is
    asked for by that tag, but only when the tag names the very same digest.

    Raises:
        ScanIncomplete: ECR does not hold the digest, the scan failed or timed out, ECR answered
            for another image, or ECR could not be asked.
    """
    import botocore.exceptions  # lazily: boto3 is slow to import

    image_id: dict[str, str] = {"imageDigest": digest}
    name = f"{repo}@{digest}"
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
                _start(ecr, repo, image_id, name, deployment)
                started = True
                continue
            if code == "ImageNotFoundException" and "imageTag" not in image_id:
                image_id = _by_tag(ecr, repo, digest, fallback_tag, deployment)
                continue
            if code == "RepositoryNotFoundException":
                raise ScanIncomplete(f"ECR has no repository {repo} (account {ecr.registry.account}, "
                                     f"{ecr.registry.region}); create it and push the image (`doit push:…`)") from None
            raise ScanIncomplete(f"ECR scan of {name}: {code}: {exc.response.get('Error', {}).get('Message', '')}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ScanIncomplete(f"ECR scan of {name}: cannot reach ECR: {exc}") from None
        status = (first.get("imageScanStatus") or {}).get("status", "")
        if status in DONE:
            answered = (first.get("imageId") or {}).get("imageDigest") or ("" if "imageTag" in image_id else digest)
            if answered != digest:
                raise ScanIncomplete(f"ECR answered scan findings for {repo}@{answered or 'an unnamed digest'}, "
                                     f"not for the gated {name}; they do not count. Scan again later")
            via = f"tag {image_id['imageTag']}" if "imageTag" in image_id else "digest"
            return EcrScan(list(_all_findings(ecr, repo, image_id, first)), answered, via)
        if status in FAILED:
            detail = (first.get("imageScanStatus") or {}).get("description", "")
            raise ScanIncomplete(f"ECR scan of {name} ended {status}: {detail}".rstrip(": "))
        if time.monotonic() >= deadline:
            raise ScanIncomplete(f"ECR scan of {name} still {status or 'pending'} after {timeout:g} s; "
                                 "raise scan.timeout or try again later")
        log.info("scan: ECR scan of %s is %s; waiting %.0f s", name, status or "pending", poll)
        sleep(poll)


def _missing(repo: str, digest: str, deployment: str) -> str:
    return (f"ECR repository {repo} has no image {repo}@{digest}, the pushed digest the gate is for; "
            f"push it again (`doit push:{deployment}`) and check the repository's lifecycle rules")


def _by_tag(ecr: Ecr, repo: str, digest: str, tag: str | None, deployment: str) -> dict[str, str]:
    """The imageId to ask for by tag, when allowed and the tag names ``digest`` itself.

    Raises:
        ScanIncomplete: no fallback allowed, or the tag is absent or names another image.
    """
    if not tag:
        raise ScanIncomplete(_missing(repo, digest, deployment))
    image = ecr.image(repo, tag)
    there = (image or {}).get("imageId", {}).get("imageDigest")
    if there != digest:
        held = f"{repo}:{tag} is {repo}@{there}, another image" if there else f"nor a tag {repo}:{tag}"
        raise ScanIncomplete(f"{_missing(repo, digest, deployment)} ({held}; scan.ecr.allow_tag_fallback only reads "
                             "findings of a tag that names the same digest)")
    log.info("scan: ECR knows %s@%s only by its tag %s (scan.ecr.allow_tag_fallback); same digest", repo, digest, tag)
    return {"imageTag": tag}


def _start(ecr: Ecr, repo: str, image_id: dict[str, str], name: str, deployment: str) -> None:
    import botocore.exceptions  # lazily: boto3 is slow to import

    try:
        ecr.client.start_image_scan(registryId=ecr.registry.account, repositoryName=repo, imageId=image_id)
        log.info("scan: started an ECR scan of %s", name)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ImageNotFoundException" and "imageDigest" in image_id:
            raise ScanIncomplete(_missing(repo, image_id["imageDigest"], deployment)) from None
        if code != "LimitExceededException":  # scanned already today: wait for that one
            raise ScanIncomplete(f"ECR cannot start a scan of {name}: {code}: {exc.response['Error'].get('Message', '')}") from None


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

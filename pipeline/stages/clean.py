"""clean_registry: untagged images in an ECR repository whose findings reach a severity (the old clean-ecr)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError, RegistryError
from pipeline.findings.model import SEVERITIES, at_least
from pipeline.registry.backend import backend_for
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanResult:
    candidates: tuple[str, ...]
    deleted: bool

    def values(self) -> dict[str, Any]:
        return {"candidates": list(self.candidates), "deleted": self.deleted}


def clean_registry(settings: Settings, name: str, severity: str = "HIGH", yes: bool = False) -> CleanResult:
    """List (dry run, the default) or delete (``yes``) untagged images with findings at ``severity`` or worse.

    Raises:
        PipelineError: not an ECR registry, or a bad severity.
        RegistryError: ECR refused.
    """
    import botocore.exceptions  # lazily: boto3 is slow to import

    dep = settings.deployment(name)
    severity = severity.upper()
    if severity not in SEVERITIES:
        raise PipelineError(f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    ecr = backend_for(dep.registry).ecr
    if ecr is None:
        raise PipelineError(f"clean_registry:{name}: needs an ECR registry (untagged images and scan summaries); "
                            f"{dep.registry.host} is generic")
    candidates = []
    try:
        pages = ecr.client.get_paginator("describe_images").paginate(
            registryId=dep.registry.account, repositoryName=dep.repo, filter={"tagStatus": "UNTAGGED"})
        for page in pages:
            for image in page.get("imageDetails") or []:
                counts = (image.get("imageScanFindingsSummary") or {}).get("findingSeverityCounts") or {}
                worst = [s for s, n in counts.items() if n and at_least(s, severity)]
                if worst:
                    candidates.append(image["imageDigest"])
                    log.info("clean_registry:%s: %s  %s", name, image["imageDigest"],
                             ", ".join(f"{s} {counts[s]}" for s in SEVERITIES if counts.get(s)))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise RegistryError(f"cannot list {dep.repo}: {exc}") from None
    if not candidates:
        log.info("clean_registry:%s: no untagged image with findings at %s or worse", name, severity)
        return CleanResult((), False)
    if not yes:
        log.info("clean_registry:%s: dry run: %d images would be deleted; run with --yes to delete them",
                 name, len(candidates))
        return CleanResult(tuple(candidates), False)
    failures = ecr.delete(dep.repo, candidates)
    if failures:
        raise RegistryError(f"could not delete {'; '.join(failures)}")
    log.info("clean_registry:%s: deleted %d untagged images", name, len(candidates))
    return CleanResult(tuple(candidates), True)

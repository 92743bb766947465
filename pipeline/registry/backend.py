"""One interface over both registry kinds: credentials, digests, registry-side retag, delete."""

from __future__ import annotations

import logging
from functools import cache, cached_property
from typing import TYPE_CHECKING

from pipeline.errors import RegistryError
from pipeline.registry.credentials import Credentials, from_docker_config, from_environment
from pipeline.registry.ecr import Ecr
from pipeline.settings import Registry

if TYPE_CHECKING:  # requests is imported only when a registry is spoken to (a no-op loads the tasks only)
    from pipeline.registry.http import RegistryHttp

log = logging.getLogger(__name__)


class Backend:
    """A registry: ``kind: generic`` speaks the Distribution API; ``kind: ecr`` adds ECR's control plane."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.host = registry.host

    @cached_property
    def ecr(self) -> Ecr | None:
        return Ecr(self.registry) if self.registry.kind == "ecr" else None

    @cached_property
    def credentials(self) -> Credentials | None:
        """ECR: from its authorization token; generic: configured env vars, else docker's config, else none.

        Raises:
            ConfigError, RegistryError: the configured source cannot provide them.
        """
        if self.ecr is not None:
            return self.ecr.credentials()
        return from_environment(self.registry) or from_docker_config(self.host)

    @cached_property
    def http(self) -> RegistryHttp:
        from pipeline.registry.http import RegistryHttp

        return RegistryHttp(self.registry, self.credentials)

    def pushed_digest(self, repo: str, tag: str) -> str | None:
        """The digest the data plane serves at ``tag`` (a manifest HEAD; no layer traffic)."""
        return self.http.manifest_digest(repo, tag)

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest at ``tag`` as the registry of record sees it (ECR: its API)."""
        if self.ecr is not None:
            image = self.ecr.image(repo, tag)
            return image["imageId"]["imageDigest"] if image else None
        return self.http.manifest_digest(repo, tag)

    def retag(self, repo: str, source: str, target: str) -> str:
        """Give the manifest at ``source`` (tag or digest) the tag ``target``, registry-side; returns its digest.

        Raises:
            RegistryError: ``source`` does not exist, or the repository refuses the tag.
        """
        if self.ecr is not None:
            image = self.ecr.image(repo, source)
            if image is None:
                raise RegistryError(f"ECR repository {repo} has no image {source}; push it first (`doit push:…`)")
            if not self.ecr.mutable(repo):
                current = self.tag_digest(repo, target)
                if current and current != image["imageId"]["imageDigest"]:
                    raise RegistryError(
                        f"ECR repository {repo} is immutable and tag {target} already points to another image "
                        f"({current[:19]}…); choose another tag"
                    )
            self.ecr.put_tag(repo, target, image)
            return str(image["imageId"]["imageDigest"])
        manifest = self.http.manifest(repo, source)
        if manifest is None:
            raise RegistryError(f"registry {self.host} has no {repo}:{source}; push it first (`doit push:…`)")
        return self.http.put_manifest(repo, target, manifest)

    def sharing(self, repo: str, reference: str) -> tuple[str | None, list[str]]:
        """(the digest at a tag or digest, every tag that names that digest); (None, []) when absent.

        A generic registry deletes by digest, so these are the tags a delete of ``reference`` removes.
        """
        digest = self.http.manifest_digest(repo, reference)
        if digest is None:
            return None, []
        return digest, sorted(t for t in self.http.tags(repo) if self.http.manifest_digest(repo, t) == digest)

    def delete(self, repo: str, references: list[str]) -> list[str]:
        """Delete tags and digests; returns what was deleted, as text.

        Raises:
            RegistryError: a reference does not exist, or the registry refuses deletes.
        """
        if self.ecr is not None:
            failures = self.ecr.delete(repo, references)
            if failures:
                raise RegistryError(f"ECR repository {repo}: could not delete {'; '.join(failures)}")
            return [f"{repo}:{r}" if not r.startswith("sha256:") else f"{repo}@{r}" for r in references]
        done = []
        for ref in references:
            digest = ref if ref.startswith("sha256:") else self.http.manifest_digest(repo, ref)
            if digest is None:
                raise RegistryError(f"registry {self.host} has no {repo}:{ref}; nothing deleted for it")
            self.http.delete_manifest(repo, digest)
            log.info("deleted %s/%s@%s (every tag on that digest is gone)", self.host, repo, digest)
            done.append(f"{repo}@{digest}" + ("" if ref == digest else f" (was {ref})"))
        return done


@cache
def backend_for(registry: Registry) -> Backend:
    """One backend (HTTP session, credentials, ECR client) per registry and process."""
    return Backend(registry)

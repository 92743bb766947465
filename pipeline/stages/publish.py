"""Registry stages: login, push, promote, pull and delete of the mission images."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import records
from pipeline.containers import docker_cli
from pipeline.errors import CommandFailed, RegistryAuthError, RegistryError
from pipeline.keys import short
from pipeline.registry.backend import backend_for
from pipeline.retry import with_retries
from pipeline.run import run
from pipeline.settings import Deployment, Settings
from pipeline.stages.results import Freshness

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryResult:
    deployment: str
    ref: str
    digest: str
    changed: bool
    seconds: float = 0.0

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "changed": self.changed}


def record_path(settings: Settings, name: str) -> Path:
    """build/registry/NAME.json: what push:NAME last pushed (read by the scan stage)."""
    return settings.build_dir / "registry" / f"{name}.json"


def pushed_record(settings: Settings, name: str) -> dict[str, str] | None:
    return records.load(record_path(settings, name))


# -- login ---------------------------------------------------------------------------------------

def login(settings: Settings) -> list[str]:
    """`docker login` to every registry the selected deployments use (password on stdin, never shown).

    Returns the hosts logged in to; registries without credentials are skipped with a note.

    Raises:
        RegistryAuthError: the registry refused the credentials.
    """
    done = []
    for registry in dict.fromkeys(dep.registry for dep in settings.deployments):
        creds = backend_for(registry).credentials
        if creds is None:
            log.info("login: no credentials configured for %s; using it anonymously", registry.host)
            continue
        try:
            run([docker_cli(), "login", "--username", creds.username, "--password-stdin", registry.host],
                stdin_text=creds.password + "\n")
        except CommandFailed as exc:
            last = str(exc).strip().splitlines()[-1].strip()
            raise RegistryAuthError(f"login to {registry.host} as {creds.username} failed: {last}") from None
        log.info("login: logged in to %s as %s", registry.host, creds.username)
        done.append(registry.host)
    return done


# -- push ------------------------------------------------------------------------------------------

def push_freshness(settings: Settings, engine: Engine, dep: Deployment, *, quick: bool = True,
                   extras: bool = True) -> Freshness:
    """Current when the registry already serves this image's manifest at the build tag (one manifest GET),
    and (with ``extras``) at each extra tag of the mission's repository.

    ``quick`` (for doit's up-to-date check) makes one attempt; the push itself retries.
    """
    ref = dep.image_ref(settings.environment)
    image = engine.require(ref, f"run `doit build:{dep.name}` first")
    tag = dep.tag("build", settings.environment)
    http = backend_for(dep.registry).http
    manifest = (http.quick() if quick else http).manifest(dep.repo, tag)
    if manifest is None:
        return Freshness(False, f"registry {dep.registry.host} has no {dep.repo}:{tag} yet")
    repo_digests = image.attrs.get("RepoDigests") or []
    if manifest.config_digest == image.id or f"{dep.repository}@{manifest.digest}" in repo_digests:
        behind = [t for t in extra_registry_tags(settings, dep, image.labels)
                  if backend_for(dep.registry).tag_digest(dep.repo, t) != manifest.digest] if extras else []
        if behind:
            return Freshness(False, f"registry {dep.registry.host} holds {ref} but not yet its extra tag "
                                    f"{dep.repo}:{behind[0]} (a registry-side retag, no upload)")
        return Freshness(True, f"registry {dep.registry.host} already holds {ref} ({short(manifest.digest)})")
    return Freshness(False, f"{ref} is {short(image.id)} locally but the registry serves {short(manifest.digest)}")


def extra_registry_tags(settings: Settings, dep: Deployment, labels: Mapping[str, str]) -> list[str]:
    """The mission's extra tags (``tags.extra``) in its own repository: push adds them registry-side.

    Extra tags naming another repository (``notebook-demo:latest``) stay local names.

    Raises:
        PipelineError: a template uses {commit} outside a git checkout.
    """
    from pipeline import tagging
    from pipeline.plan import LABEL_INPUTS

    tags = []
    for template in dep.extra_tags:
        ref = tagging.render(template, repository=dep.repository, environment=settings.environment,
                             key=labels.get(LABEL_INPUTS, ""), root=settings.deployments_dir)
        repository, _, tag = ref.rpartition(":")
        if repository == dep.repository:
            tags.append(tag)
    return tags


def push(settings: Settings, engine: Engine, dep: Deployment) -> RegistryResult:
    """Push the mission image at its build tag unless the registry already holds it.

    Connection errors and 5xx are retried ``registry.retries`` times with backoff; 401/403/404 never.

    Raises:
        ImageNotFound: the image is not built.
        RegistryError: the registry refused, or stayed unreachable.
    """
    started = time.monotonic()
    ref = dep.image_ref(settings.environment)
    image = engine.require(ref, f"run `doit build:{dep.name}` first")
    fresh = push_freshness(settings, engine, dep, quick=False, extras=False)  # extra tags: a retag below
    backend = backend_for(dep.registry)
    if fresh.current:
        log.info("push:%s: %s; nothing sent", dep.name, fresh.reason)
        digest = backend.pushed_digest(dep.repo, dep.tag("build", settings.environment)) or ""
        changed = False
    else:
        creds = backend.credentials
        auth = creds.auth_config() if creds else None
        digest = with_retries(
            lambda: engine.push(ref, auth), what=f"push {ref}",
            attempts=dep.registry.retries + 1, backoff=dep.registry.backoff,
        )
        log.info("push:%s: pushed %s@%s", dep.name, dep.repository, digest)
        changed = True
    build_tag = dep.tag("build", settings.environment)
    for tag in extra_registry_tags(settings, dep, image.labels):
        if backend.tag_digest(dep.repo, tag) != digest:
            backend.retag(dep.repo, build_tag, tag)
            log.info("push:%s: tagged %s:%s in the registry (%s)", dep.name, dep.repository, tag, short(digest))
            changed = True
    record = {"ref": ref, "digest": digest, "image": image.id, "repository": dep.repository}
    records.save(record_path(settings, dep.name), record)
    return RegistryResult(dep.name, ref, digest, changed, time.monotonic() - started)


# -- promote ---------------------------------------------------------------------------------------

def promote_tags(settings: Settings, dep: Deployment, source: str | None, target: str | None) -> tuple[str, str]:
    return source or dep.tag("build", settings.environment), target or dep.tag("promoted", settings.environment)


def promote_freshness(settings: Settings, dep: Deployment, source: str | None = None, target: str | None = None) -> Freshness:
    src, dst = promote_tags(settings, dep, source, target)
    backend = backend_for(dep.registry)
    want = backend.tag_digest(dep.repo, src)
    if want is None:
        return Freshness(False, f"{dep.repository}:{src} is not in the registry yet")
    have = backend.tag_digest(dep.repo, dst)
    if have == want:
        return Freshness(True, f"{dep.repository}:{dst} already is {short(want)}")
    return Freshness(False, f"{dep.repository}:{dst} is {short(have)}, {src} is {short(want)}")


def promote(settings: Settings, dep: Deployment, source: str | None = None, target: str | None = None) -> RegistryResult:
    """Give the manifest at ``source`` (default: the build tag) the ``target`` tag (default: the promoted tag).

    Registry-side only: no pull and no layer upload.

    Raises:
        RegistryError: the source is missing, or an immutable repository refuses the tag.
    """
    src, dst = promote_tags(settings, dep, source, target)
    backend = backend_for(dep.registry)
    fresh = promote_freshness(settings, dep, src, dst)
    if fresh.current:
        log.info("promote:%s: %s", dep.name, fresh.reason)
        return RegistryResult(dep.name, f"{dep.repository}:{dst}", backend.tag_digest(dep.repo, dst) or "", False)
    from pipeline.stages.verify import require_signed  # sign.required: only a validly signed image moves on

    require_signed(settings, dep, src, f"promote:{dep.name}")
    digest = backend.retag(dep.repo, src, dst)
    log.info("promote:%s: %s:%s -> %s (%s)", dep.name, dep.repository, src, dst, short(digest))
    return RegistryResult(dep.name, f"{dep.repository}:{dst}", digest, True)


# -- pull and delete --------------------------------------------------------------------------------

def pull(settings: Settings, engine: Engine, dep: Deployment, reference: str | None = None, *,
         tag: bool = False) -> RegistryResult:
    """Pull the deployment's image by tag (default: the build tag) or by ``sha256:`` digest.

    A pull by digest leaves the mission tag where it was, unless ``tag`` (``--tag``) moves it to the
    pulled image; a pull of the build tag restores the mission tag itself.

    Raises:
        ImageNotFound: the registry does not have it or refused.
    """
    reference = reference or dep.tag("build", settings.environment)
    ref = f"{dep.repository}@{reference}" if reference.startswith("sha256:") else f"{dep.repository}:{reference}"
    mission = dep.image_ref(settings.environment)
    creds = backend_for(dep.registry).credentials
    image = with_retries(
        lambda: engine.pull(ref, creds.auth_config() if creds else None), what=f"pull {ref}",
        attempts=dep.registry.retries + 1, backoff=dep.registry.backoff,
    )
    log.info("pull:%s: %s is %s locally", dep.name, ref, short(image.id))
    if ref != mission:
        if tag:
            engine.tag(image.id, mission)
            log.info("pull:%s: tagged it as the mission image %s (--tag)", dep.name, mission)
        else:
            current = engine.image(mission)
            where = f"still {short(current.id)}" if current else "absent"
            if current is None or current.id != image.id:
                log.info("pull:%s: the mission tag %s was not changed (%s); add --tag to point it at this image",
                         dep.name, mission, where)
    return RegistryResult(dep.name, ref, image.id, True)


def delete(settings: Settings, dep: Deployment, references: list[str], *, all_tags: bool = False) -> list[str]:
    """Delete tags and/or digests of the deployment's repository in its registry.

    A generic registry deletes by digest, which removes every tag on it: a tag that shares its
    digest with other tags is refused (naming them) unless ``all_tags`` (``--all-tags``).

    Raises:
        RegistryError: nothing given, a reference is unknown, other tags would go too, or the registry refuses.
    """
    if not references:
        raise RegistryError(f"give the tags or digests to delete: doit delete:{dep.name} -- TAG|DIGEST …")
    backend = backend_for(dep.registry)
    if backend.ecr is None:
        for ref in references:
            digest, tags = backend.sharing(dep.repo, ref)
            if digest is None:
                raise RegistryError(f"registry {dep.registry.host} has no {image_name(dep.repository, ref)}; "
                                    "nothing was deleted")
            others = [t for t in tags if t != ref and t not in references]
            if not others:
                continue
            listed = ", ".join(f"{dep.repository}:{t}" for t in others)
            if ref.startswith("sha256:"):
                log.info("delete:%s: %s@%s also removes the tags %s", dep.name, dep.repository, digest, listed)
            elif not all_tags:
                raise RegistryError(
                    f"{dep.repository}:{ref} is {short(digest)}, which is also tagged {listed}; a registry deletes "
                    f"by digest, so those would go too. Nothing was deleted: give --all-tags to delete them all "
                    f"(doit delete:{dep.name} --all-tags -- {ref})")
            else:
                log.info("delete:%s: --all-tags: deleting %s:%s removes %s too", dep.name, dep.repository, ref, listed)
    done = backend.delete(dep.repo, references)
    for item in done:
        log.info("delete:%s: deleted %s", dep.name, item)
    return done


def image_name(repository: str, reference: str) -> str:
    """``repository@sha256:…`` for a digest, ``repository:tag`` for a tag."""
    return f"{repository}@{reference}" if reference.startswith("sha256:") else f"{repository}:{reference}"

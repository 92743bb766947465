"""A stage cache that trusts only signed entries (``cache.trust``), and the signing of what is stored in it.

Without ``cache.trust`` an entry is used when its ``pipeline.inputs`` label equals
the stage's key; the key is computable from the repository, so that trusts
everyone who can push to the cache repository.  With it, an entry is used only when:

- its signed provenance verifies against one of the ``cache.trust`` keys, is
  about the entry's digest, and attests exactly the stage's key;
- its layers extend the local parent's (``RootFS.Layers`` is a prefix of its diff IDs).

Everything is read from the registry (manifest, config, attestations) before
any layer is pulled, and the entry is then pulled by that digest.  A rejected
entry is one warning, and the stage is built locally.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline import provenance, signing
from pipeline.errors import ConfigError, PipelineError, VerificationFailed
from pipeline.keys import InputKey, short
from pipeline.plan import LABEL_INPUTS
from pipeline.registry import referrers
from pipeline.registry.backend import Backend

if TYPE_CHECKING:
    from pipeline.cache import StageCache

log = logging.getLogger(__name__)


def trusted_ref(cache: StageCache, backend: Backend, task: str, key: InputKey, ref: str) -> str | None:
    """What to pull for this cache entry: ``ref`` itself without ``cache.trust``; with it ``REPO@DIGEST`` of an
    entry that passed every check, or None (and one warning) for an entry that did not.

    Raises:
        ConfigError: a ``cache.trust`` key file is unusable.
    """
    trust = cache.cache.trust
    if not trust:
        return ref
    keys = signing.load_public_keys(trust, "cache.trust")
    repo = cache.cache.repo
    try:
        reason, digest = _problem(cache, backend, repo, cache.tag(task, key), key, keys)
    except ConfigError:
        raise
    except PipelineError as exc:
        reason, digest = f"its provenance could not be checked ({exc})", None
    if digest is None:
        log.warning("%s: WARNING: cache entry %s rejected: %s; building locally", task, ref, reason)
        return None
    log.info("%s: cache entry %s@%s: %s", task, ref.rsplit(":", 1)[0], short(digest), reason)
    return f"{ref.rsplit(':', 1)[0]}@{digest}"


def _problem(cache: StageCache, backend: Backend, repo: str, tag: str, key: InputKey,
             keys: list[signing.PublicKey]) -> tuple[str, str | None]:
    """(what was found, the entry's digest when it passed; None when rejected)."""
    manifest = backend.http.manifest(repo, tag)
    if manifest is None:
        return "it vanished from the registry", None
    config = referrers.image_config(backend, repo, manifest)
    label = ((config.get("config") or {}).get("Labels") or {}).get(LABEL_INPUTS)
    if label != key.digest:
        return f"it carries inputs {short(label)}, not {short(key.digest)}", None
    artifacts = referrers.fetch(backend, repo, manifest.digest)
    try:
        opened, attested, _ = provenance.open_provenance(artifacts, manifest.digest, keys)
    except VerificationFailed as exc:
        return str(exc), None
    if attested.digest != key.digest:
        return f"its provenance attests inputs {short(attested.digest)}, not {short(key.digest)}", None
    parent = key.parts.get("parent")
    if isinstance(parent, str) and parent.startswith("sha256:"):
        local = cache.engine.image(parent)
        layers = list((local.attrs.get("RootFS") or {}).get("Layers") or []) if local else None
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if layers is None:
            return f"its parent {short(parent)} is not here to compare layers with", None
        if diff_ids[:len(layers)] != layers:
            return f"foreign lineage: its layers do not extend those of the local parent {short(parent)}", None
    return f"signed provenance verified ({opened.signer.label}), lineage OK", manifest.digest


def sign_entry(cache: StageCache, backend: Backend, task: str, key: InputKey, digest: str) -> None:
    """Attach signed provenance to a freshly stored cache entry when ``sign.key`` is set; trouble is a warning."""
    settings = cache.settings
    if not settings.sign.key:
        return
    repo = cache.cache.repo
    try:
        signer = signing.load_signer(settings.sign)
        subject = backend.http.manifest(repo, digest)
        if subject is None:
            raise PipelineError(f"registry {backend.host} has no {repo}@{digest}")
        statement = provenance.build_statement(settings, task, key, f"{backend.host}/{repo}", digest, None, None)
        envelope = referrers.Envelope(provenance.SLSA_PROVENANCE, signing.seal(statement, signer))
        artifact = referrers.attach(backend, repo, subject, [envelope])
        log.info("%s: signed the cache entry's provenance with key %s (%s)", task, signing.keyid_of(signer)[:12],
                 artifact.where)
    except PipelineError as exc:
        log.warning("%s: WARNING: could not sign the cache entry %s@%s (%s); cache.trust runners will not use it",
                    task, repo, short(digest), exc)

"""The OCI Distribution (Docker Registry v2) HTTP API, for manifests only: no layer traffic.

One requests session per registry; retries for connection errors and 5xx live
here (bounded, with exponential backoff); 4xx are never retried.  Basic and
Bearer-token authentication are both handled from the 401 challenge.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests

from pipeline.errors import RegistryAuthError, RegistryError, RegistryUnavailable
from pipeline.hashing import sha256_bytes
from pipeline.registry.credentials import Credentials
from pipeline.settings import Registry

log = logging.getLogger(__name__)

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# Without these a registry converts the manifest to schema1 and answers with another digest.
ACCEPT = ", ".join((MANIFEST_V2, MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))
TIMEOUT = (5, 60)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    @property
    def config_digest(self) -> str | None:
        """For a single-image manifest, its config blob's digest, which is the image ID."""
        try:
            return (json.loads(self.body).get("config") or {}).get("digest")
        except ValueError:
            return None


def loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in {"localhost", "[::1]"} or name.startswith("127.")


class RegistryHttp:
    """Manifest operations against one registry host."""

    def __init__(self, registry: Registry, credentials: Credentials | None) -> None:
        self.registry = registry
        self.host = registry.host
        # Docker itself talks plain http to loopback registries and to ones marked insecure.
        scheme = "http" if registry.insecure or loopback(registry.host) else "https"
        self.base = f"{scheme}://{registry.host}/v2"
        self.credentials = credentials
        self.session = requests.Session()
        self._auth: dict[str, str] = {}  # scope -> Authorization header
        self.attempts = registry.retries + 1
        self.timeout: tuple[float, float] = TIMEOUT  # (connect, read)

    def quick(self, timeout: tuple[float, float] | None = None) -> RegistryHttp:
        """The same client (session, tokens) without retries: for up-to-date checks, which must not stall.

        ``timeout`` (connect, read) replaces the default for the clone (the stage cache's own).
        """
        clone = copy.copy(self)
        clone.attempts = 1
        if timeout is not None:
            clone.timeout = timeout
        return clone

    def ping(self) -> None:
        """One GET of ``/v2/``, no retries: any HTTP answer (200, or 401 asking for credentials) will do.

        Raises:
            RegistryUnavailable: no connection, no answer within the timeout, or a 5xx.
        """
        try:
            resp = self.session.get(f"{self.base}/", timeout=self.timeout)
        except requests.ConnectTimeout:
            raise RegistryUnavailable(f"registry {self.host}: no connection within {self.timeout[0]:g} s") from None
        except requests.ReadTimeout:
            raise RegistryUnavailable(f"registry {self.host}: connected, but no answer within {self.timeout[1]:g} s") from None
        except requests.ConnectionError as exc:
            raise RegistryUnavailable(f"registry {self.host}: {_short(exc)}") from None
        if resp.status_code >= 500:
            raise RegistryUnavailable(f"registry {self.host}: {resp.status_code} {resp.reason}")

    # -- manifests ---------------------------------------------------------------------

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest at a tag or digest (a HEAD), or None when the registry has no such manifest."""
        resp = self._request("HEAD", f"{repo}/manifests/{reference}", repo, headers={"Accept": ACCEPT}, ok=(200, 404))
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        manifest = self.manifest(repo, reference)
        return manifest.digest if manifest else None

    def manifest(self, repo: str, reference: str) -> Manifest | None:
        """GET a manifest with the v2/OCI/list/index Accept types; None when absent."""
        resp = self._request("GET", f"{repo}/manifests/{reference}", repo, headers={"Accept": ACCEPT}, ok=(200, 404))
        if resp.status_code == 404:
            return None
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip() or MANIFEST_V2
        digest = resp.headers.get("Docker-Content-Digest") or sha256_bytes(resp.content)
        return Manifest(digest, media_type, resp.content)

    def put_manifest(self, repo: str, tag: str, manifest: Manifest) -> str:
        """PUT the same bytes under ``tag`` (a registry-side retag: no layer upload); returns the digest."""
        resp = self._request(
            "PUT", f"{repo}/manifests/{tag}", repo, push=True,
            headers={"Content-Type": manifest.media_type}, data=manifest.body, ok=(201,),
        )
        return resp.headers.get("Docker-Content-Digest") or manifest.digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        """DELETE by digest: removes every tag on it.

        Raises:
            RegistryError: deletes are disabled (405) or the digest is unknown.
        """
        resp = self._request("DELETE", f"{repo}/manifests/{digest}", repo, push=True, ok=(202, 404, 405))
        if resp.status_code == 405:
            raise RegistryError(
                f"registry {self.host} has deletes disabled (405 Method Not Allowed); "
                "enable storage.delete.enabled in its configuration"
            )
        if resp.status_code == 404:
            raise RegistryError(f"registry {self.host} has no manifest {repo}@{digest}")

    def tags(self, repo: str) -> list[str]:
        resp = self._request("GET", f"{repo}/tags/list", repo, ok=(200, 404))
        return [] if resp.status_code == 404 else list(resp.json().get("tags") or [])

    # -- transport -----------------------------------------------------------------------

    def _request(
        self, method: str, path: str, repo: str, *, push: bool = False, ok: Iterable[int] = (200,), **kwargs: Any
    ) -> requests.Response:
        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}"
        url = f"{self.base}/{path}"
        attempts = self.attempts
        authenticated = False
        problem = ""
        attempt = 0
        while attempt < attempts:
            headers = dict(kwargs.pop("headers", None) or {})
            kwargs["headers"] = headers
            if scope in self._auth:
                headers["Authorization"] = self._auth[scope]
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = _short(exc)
            else:
                if resp.status_code == 401 and not authenticated:
                    self._authenticate(resp, scope)
                    authenticated = True
                    continue  # the retry with credentials is not an attempt
                if resp.status_code < 500:
                    if resp.status_code in ok:
                        return resp
                    raise self._refusal(method, path, resp)
                problem = f"{resp.status_code} {resp.reason}"
            attempt += 1
            if attempt < attempts:
                delay = self.registry.backoff * 2 ** (attempt - 1)
                log.info("registry %s: %s; retrying in %.1f s (%d/%d)", self.host, problem, delay, attempt, attempts - 1)
                time.sleep(delay)
        raise RegistryUnavailable(
            f"registry {self.host}: {problem} after {attempts} attempt{'s' if attempts > 1 else ''}; "
            "check that it is running and reachable"
        )

    def _authenticate(self, resp: requests.Response, scope: str) -> None:
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if self.credentials is None and scheme == "basic":
            raise RegistryAuthError(
                f"registry {self.host} requires credentials (401 unauthorized); set registry.username_env and "
                "registry.password_env, or run `doit login`"
            )
        if scheme == "basic":
            assert self.credentials is not None
            self.session.auth = (self.credentials.username, self.credentials.password)
            return
        if scheme != "bearer":
            raise RegistryAuthError(f"registry {self.host}: unsupported authentication {challenge[:60]!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        params.setdefault("scope", scope)
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        try:
            token_resp = self.session.get(realm, params=params, auth=auth, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"registry {self.host}: token service {realm}: {_short(exc)}") from None
        if token_resp.status_code != 200:
            raise RegistryAuthError(f"registry {self.host}: token service refused ({token_resp.status_code}); check the credentials")
        body = token_resp.json()
        self._auth[scope] = f"Bearer {body.get('token') or body.get('access_token')}"

    def _refusal(self, method: str, path: str, resp: requests.Response) -> RegistryError:
        detail = _error_message(resp)
        if resp.status_code == 401:
            who = f" for user {self.credentials.username}" if self.credentials else ""
            return RegistryAuthError(f"registry {self.host} refused the credentials{who} (401 unauthorized: {detail})")
        if resp.status_code == 403:
            return RegistryAuthError(f"registry {self.host} denied {method} {path} (403: {detail})")
        return RegistryError(f"registry {self.host}: {method} {path} answered {resp.status_code}: {detail}")


def _error_message(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except ValueError:
        pass
    return resp.reason or str(resp.status_code)


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:160] if text else type(exc).__name__

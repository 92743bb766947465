"""The connection to the Docker Engine: host choice (DOCKER_HOST, docker context), lazy connect, error translation."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline.errors import EngineUnavailable, ImageNotFound, PipelineError


class _Lazy:
    """A module imported on first use: loading the tasks and a no-op's checks never pay for the SDK (~0.1 s)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


docker = _Lazy("docker")
requests = _Lazy("requests")


def parse_repository_tag(ref: str) -> tuple[str, str | None]:
    from docker.utils import parse_repository_tag as parse

    return parse(ref)  # type: ignore[no-any-return]

DEFAULT_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    attrs: Mapping[str, Any]


def required(info: ImageInfo | None, ref: str, hint: str) -> ImageInfo:
    """``info`` (what a lookup of ``ref`` found), or an error naming the image and ``hint`` (what to run first).

    Raises:
        ImageNotFound: ``info`` is None.
    """
    if info is None:
        raise ImageNotFound(f"image {ref} does not exist; {hint}")
    return info


class Connection:
    """The lazily connected low-level client every part of Engine shares."""

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._api: docker.APIClient | None = None

    @property
    def host(self) -> str:
        return self._host or os.environ.get("DOCKER_HOST") or _context_host() or DEFAULT_HOST

    @property
    def api(self) -> docker.APIClient:
        """The low-level client, connected on first use.

        The engine is chosen like the docker CLI does: DOCKER_HOST, else the docker
        context (DOCKER_CONTEXT or the CLI's current context), else the local socket.

        Raises:
            EngineUnavailable: the daemon cannot be reached.
        """
        if self._api is None:
            try:
                self._api = _connect(self._host)
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                raise EngineUnavailable(
                    f"cannot reach the Docker daemon at {self.host}: {_reason(exc)}; "
                    "start dockerd (scripts/setup starts it) or point DOCKER_HOST at a running engine"
                ) from None
        return self._api

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Translate SDK and connection errors into PipelineErrors naming ``what`` and the host."""
        try:
            yield
        except docker.errors.NotFound as exc:
            raise ImageNotFound(f"{what}: {_explanation(exc)}") from None
        except docker.errors.APIError as exc:
            raise PipelineError(f"{what}: the Docker engine at {self.host} answered: {_explanation(exc)}") from None
        except (requests.ConnectionError, docker.errors.DockerException) as exc:
            raise EngineUnavailable(f"{what}: lost the Docker daemon at {self.host}: {_reason(exc)}") from None


def _context_name() -> str | None:
    name = os.environ.get("DOCKER_CONTEXT")
    if name:
        return name
    current = docker.context.ContextAPI.get_current_context()
    return None if current is None or current.Name == "default" else current.Name


def _context_host() -> str | None:
    name = _context_name()
    if not name:
        return None
    ctx = docker.context.ContextAPI.get_context(name)
    return ctx.Host if ctx is not None else None


def _connect(host: str | None) -> docker.APIClient:
    """A pinged client for ``host``, DOCKER_HOST, the docker context, or the default socket."""
    if host is None and not os.environ.get("DOCKER_HOST") and _context_name():
        name = _context_name()
        ctx = docker.context.ContextAPI.get_context(name)
        if ctx is None:
            raise docker.errors.DockerException(f"docker context {name!r} does not exist")
        client = docker.DockerClient(base_url=ctx.Host, tls=ctx.TLSConfig or False,
                                     use_ssh_client=str(ctx.Host).startswith("ssh://"))
    elif host:
        client = docker.DockerClient(base_url=host, use_ssh_client=host.startswith("ssh://"))
    else:
        client = docker.from_env(use_ssh_client=os.environ.get("DOCKER_HOST", "").startswith("ssh://"))
    client.api.ping()
    return client.api


def _stream_error(event: Mapping[str, Any]) -> str:
    detail = event.get("errorDetail") or {}
    return str(detail.get("message") or event.get("error") or "unknown error").strip()


def _explanation(exc: docker.errors.APIError) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else str(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("FileNotFoundError", "ConnectionRefusedError", "Connection refused", "No such file or directory"):
        if marker in text:
            return "connection refused" if "Refused" in marker or "refused" in marker else "no such socket"
    return text.splitlines()[0][:200] if text else type(exc).__name__

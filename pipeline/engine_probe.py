"""Read-only image lookups for the up-to-date checks: each image asked for once per run, no docker SDK.

A no-op run looks up each image once (``GET /images/REF/json``), however many
stages ask about it: the demo's ten checks make five requests (root, three
chain layers, the mission image), and each extra deployment adds one.  The
request goes over the engine's unix socket with a few lines of HTTP/1.1 and
only the standard library, so a no-op never imports the docker SDK (with
requests and urllib3, about 0.1 s).  Every other call, every host the small
client does not reach (``tcp://`` with or without TLS, ``ssh://``, a docker
context other than ``default``) and every error go through the SDK
(:class:`pipeline.engine.Engine`): a daemon that is down gets the SDK's own
one-line message.

Why not one listing (``GET /images/json`` filtered by ``pipeline.namespace``)?
On this Docker 20.10 engine, with about 100 images, a listing took 90–240 ms
whatever the filter (it walks every image), an inspect 0.5–7 ms.

The answers are a snapshot.  It is dropped whenever a task with actions starts
or ends (:func:`invalidate`, called by the reporter and by every stage action),
so a check never sees an image older than the last task that ran; outside a
run (``doit info``) each top-level check takes a fresh one.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipeline.engine.connection import DEFAULT_HOST, ImageInfo, required

if TYPE_CHECKING:
    from pipeline.engine import Engine

TIMEOUT = 30.0
_MAX_BODY = 256 << 20

_generation = 0
_generation_lock = threading.Lock()


def invalidate() -> None:
    """Forget every snapshot taken so far (a task may have changed the engine's images)."""
    global _generation
    with _generation_lock:
        _generation += 1


class ProbeError(Exception):
    """The small client could not answer; the caller asks the SDK instead."""


def unix_socket(host: str | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The engine's socket path when the engine is chosen as the SDK would choose a local one, else None.

    None means "use the SDK": DOCKER_HOST or ``host`` names a tcp or ssh engine, or a
    docker context other than ``default`` is selected (DOCKER_CONTEXT or the CLI's
    ``currentContext``), whose endpoint and TLS settings only the SDK reads.
    """
    chosen = host or environ.get("DOCKER_HOST")
    if not chosen:
        context = environ.get("DOCKER_CONTEXT") or _current_context(environ)
        if context and context != "default":
            return None
        chosen = DEFAULT_HOST
    if not chosen.startswith("unix://"):
        return None
    path = chosen[len("unix://"):]
    return path if path.startswith("/") else None


def _current_context(environ: Mapping[str, str]) -> str | None:
    """``currentContext`` of the docker CLI config, found the way docker-py's find_config_file does."""
    candidates = []
    if environ.get("DOCKER_CONFIG"):
        candidates.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    home = environ.get("HOME") or os.path.expanduser("~")
    candidates += [Path(home) / ".docker" / "config.json", Path(home) / ".dockercfg"]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError:
            return "unreadable"  # not "default": the SDK decides
        try:
            data = json.loads(text)
        except ValueError:
            return "default"  # docker-py treats an unparsable config as the default context
        name = data.get("currentContext") if isinstance(data, dict) else None
        return name if isinstance(name, str) and name else "default"
    return None


def get_json(path: str, query: str = "", *, sock_path: str, timeout: float = TIMEOUT) -> tuple[int, Any]:
    """One ``GET`` of the Engine API over its unix socket: (status, decoded JSON body or None).

    Raises:
        ProbeError: the socket cannot be reached, or the answer is not HTTP/1.x with a JSON body.
    """
    target = path + (f"?{query}" if query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pipeline-probe\r\n"
               "Accept: application/json\r\nConnection: close\r\n\r\n").encode("ascii")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(sock_path)
            conn.sendall(request)
            chunks = []
            size = 0
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_BODY:
                    raise ProbeError(f"answer to {path} is larger than {_MAX_BODY} bytes")
    except OSError as exc:
        raise ProbeError(f"{sock_path}: {exc}") from None
    status, body = _parse_response(b"".join(chunks))
    if not body:
        return status, None
    try:
        return status, json.loads(body)
    except ValueError:
        raise ProbeError(f"answer to {path} is not JSON") from None


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ProbeError("truncated HTTP answer")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProbeError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if len(body) < length:
            raise ProbeError("truncated HTTP body")
        body = body[:length]
    return int(parts[1]), body


def _dechunk(data: bytes) -> bytes:
    out = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise ProbeError("truncated chunked body")
        size = int(data[pos:end].split(b";", 1)[0] or b"0", 16)
        if size == 0:
            return b"".join(out)
        start = end + 2
        if start + size > len(data):
            raise ProbeError("truncated chunked body")
        out.append(data[start:start + size])
        pos = start + size + 2


class CheckEngine:
    """An :class:`~pipeline.engine.Engine` whose :meth:`image` asks the daemon once per image and snapshot.

    Only the up-to-date checks use it (pipeline.tasks.context.checks); stage
    actions use a plain Engine.  Every other method, every host the small
    client does not reach and every error go through the SDK's Engine, made
    (and imported) on first use.
    """

    def __init__(self, host: str | None = None) -> None:
        self._sdk: Engine | None = None
        self._host = host
        self._socket = unix_socket(host)
        self._lock = threading.Lock()
        self._generation = -1
        self._by_ref: dict[str, ImageInfo | None] = {}
        self.lookups = 0  # how many times the daemon was asked (for tests and the bench)

    @property
    def sdk(self) -> Engine:
        """The SDK's Engine for everything the small client does not answer."""
        if self._sdk is None:
            from pipeline.engine.client import Engine

            self._sdk = Engine(self._host)
        return self._sdk

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never reached for the attributes set in __init__
            raise AttributeError(name)
        return getattr(self.sdk, name)

    @property
    def host(self) -> str:
        if self._socket is not None:
            return self._host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        return self.sdk.host

    def image(self, ref: str) -> ImageInfo | None:
        """The image ``ref`` names now, or None; each reference is looked up once per snapshot."""
        if self._socket is None:
            return self.sdk.image(ref)
        with self._lock:
            if self._generation != _generation:
                self._generation, self._by_ref = _generation, {}
            by_ref, generation = self._by_ref, self._generation
            if ref in by_ref:
                return by_ref[ref]
        info = self._inspect(ref, self._socket)
        with self._lock:
            if generation == _generation:  # else a task ran meanwhile: answer this once, keep nothing
                by_ref[ref] = info
                if info is not None:
                    by_ref.setdefault(info.id, info)
        return info

    def require(self, ref: str, hint: str) -> ImageInfo:
        """Like :meth:`image` but a missing image is an error (as :meth:`pipeline.engine.Engine.require`).

        Raises:
            ImageNotFound: naming the image and ``hint`` (what to run first).
        """
        return required(self.image(ref), ref, hint)

    def _inspect(self, ref: str, sock_path: str) -> ImageInfo | None:
        """``GET /images/REF/json`` over the socket; the SDK answers when the socket cannot."""
        try:
            status, attrs = get_json(f"/images/{quote(ref, safe='/:@')}/json", sock_path=sock_path)
        except ProbeError:
            return self.sdk.image(ref)  # the SDK reports what is wrong, with its message
        self.lookups += 1
        if status == 404:
            return None
        if status != 200 or not isinstance(attrs, dict) or "Id" not in attrs:
            return self.sdk.image(ref)
        config = attrs.get("Config") or {}
        return ImageInfo(id=attrs["Id"], tags=tuple(attrs.get("RepoTags") or ()),
                         labels=dict(config.get("Labels") or {}), size=int(attrs.get("Size") or 0), attrs=attrs)

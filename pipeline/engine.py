"""The one Docker SDK wrapper.

Only this module imports ``docker``.  It honours DOCKER_HOST (unix, tcp with
or without TLS, ssh) through the SDK's own environment handling, connects
lazily (listing tasks needs no daemon), streams build output into the task log
and reads errors out of the SDK's streams, which report them instead of raising.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.buildctx.send import DOCKERFILE_NAME
from pipeline.errors import BuildFailed, CommandFailed, EngineUnavailable, ImageNotFound, PipelineError, RegistryError
from pipeline.run import run

log = logging.getLogger(__name__)


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
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
TAIL = 15


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class BuildRequest:
    """One Dockerfile build: ``task`` names it in messages and logs."""

    task: str
    context: Path
    dockerfile: Path
    buildargs: Mapping[str, str]
    labels: Mapping[str, str]
    # The context the pipeline writes itself (pipeline.buildctx.send.BuildContext): when set, the
    # build reads it instead of the ``context`` directory, and ``dockerfile`` is only for messages.
    files: Any = None
    # Build args whose values are image IDs: BuildKit cannot resolve FROM by ID, so the CLI path
    # gives each a one-off tag for the build.
    id_args: frozenset[str] = frozenset()


class Engine:
    """A lazily connected Docker Engine client."""

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

    # -- images ---------------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        """Inspect a local image; None when it does not exist."""
        api = self.api
        try:
            with self._call(f"inspect {ref}"):
                attrs = api.inspect_image(ref)
        except ImageNotFound:
            return None
        config = attrs.get("Config") or {}
        return ImageInfo(
            id=attrs["Id"],
            tags=tuple(attrs.get("RepoTags") or ()),
            labels=dict(config.get("Labels") or {}),
            size=int(attrs.get("Size") or 0),
            attrs=attrs,
        )

    def require(self, ref: str, hint: str) -> ImageInfo:
        """Like :meth:`image` but a missing image is an error.

        Raises:
            ImageNotFound: naming the image and ``hint`` (what to run first).
        """
        info = self.image(ref)
        if info is None:
            raise ImageNotFound(f"image {ref} does not exist; {hint}")
        return info

    def untag(self, ref: str) -> None:
        """Remove one tag; the image stays while other tags or children use it."""
        with self._call(f"untag {ref}"):
            self.api.remove_image(ref, noprune=True)

    def tag(self, image_id: str, ref: str) -> None:
        repo, tag = parse_repository_tag(ref)
        with self._call(f"tag {image_id[:19]} as {ref}"):
            self.api.tag(image_id, repo, tag or "latest", force=True)

    def pull(self, ref: str, auth: Mapping[str, str] | None = None) -> ImageInfo:
        """Pull ``ref`` (tag or ``@digest``), reading errors out of the progress stream.

        Raises:
            ImageNotFound: the registry refused or does not have it.
        """
        repo, tag = parse_repository_tag(ref)
        log.info("pulling %s", ref)
        with self._call(f"pull {ref}"):
            kwargs: dict[str, Any] = {"stream": True, "decode": True}
            if auth:
                kwargs["auth_config"] = dict(auth)
            for event in self.api.pull(repo, tag or "latest", **kwargs):
                if "error" in event:
                    raise ImageNotFound(f"cannot pull {ref}: {_stream_error(event)}")
                if event.get("status") and not event.get("progressDetail"):
                    log.debug("%s", event["status"])
        return self.require(ref, "the pull reported success but the image is absent")

    def push(self, ref: str, auth: Mapping[str, str] | None = None) -> str:
        """Push ``ref``; returns the digest the registry reports.

        The SDK does not raise on a failed push: the error arrives in the stream, so it is read here.

        Raises:
            RegistryError: with the registry's own message.
        """
        repo, tag = parse_repository_tag(ref)
        digest = ""
        with self._call(f"push {ref}"):
            kwargs: dict[str, Any] = {"stream": True, "decode": True}
            if auth:
                kwargs["auth_config"] = dict(auth)
            for event in self.api.push(repo, tag, **kwargs):
                if "error" in event or "errorDetail" in event:
                    raise RegistryError(f"push {ref}: {_stream_error(event)}")
                aux = event.get("aux") or {}
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
                status = event.get("status")
                if status and not event.get("progressDetail"):
                    log.info("%s%s", f"{event['id']}: " if event.get("id") else "", status)
        if not digest:
            raise RegistryError(f"push {ref}: the engine reported no digest")
        return digest

    def import_tar(self, source: str | IO[bytes] | Iterable[bytes], changes: list[str]) -> str:
        """``docker import`` a root file system tarball (path or stream); returns the untagged image ID."""
        with self._call("import root file system"):
            kwargs: dict[str, Any] = {"changes": changes}
            if not isinstance(source, str):
                kwargs["stream_src"] = True
            answer = self.api.import_image(src=source, **kwargs)
        image_id = _last_status(answer)
        if not image_id.startswith("sha256:"):
            raise PipelineError(f"docker import did not return an image ID: {answer!r:.200}")
        return image_id

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The image's layers, newest first, as the Engine API reports them (Id, Created, CreatedBy, Size, Tags).

        Raises:
            ImageNotFound: the image does not exist.
        """
        with self._call(f"history of {ref}"):
            return list(self.api.history(ref))

    def copy_from_image(self, ref: str, path: str, dest: Path) -> list[Path]:
        """Copy ``path`` (file or directory) out of the image into the directory ``dest``.

        A stopped container is created for the copy and always removed.  Returns
        the top-level paths written.

        Raises:
            ImageNotFound: the image does not exist, or ``path`` is not in it.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with self._call(f"create a container from {ref}"):
            container = self.api.create_container(ref, command=["true"], labels={"pipeline.copy": "1"})["Id"]
        try:
            try:
                with self._call(f"read {path} in {ref}"):
                    stream, _ = self.api.get_archive(container, path)
                    return _extract(stream, dest)
            except ImageNotFound:
                raise ImageNotFound(f"{path} is not in image {ref}") from None
        finally:
            with self._call(f"remove container {container[:12]}"):
                self.api.remove_container(container, force=True)

    # -- containers for patches and squashes ------------------------------------------------

    def create_container(
        self,
        ref: str,
        *,
        command: list[str] | None = None,
        entrypoint: list[str] | None = None,
        user: str | None = None,
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> str:
        """Create (not start) a container from ``ref``; returns its ID.

        ``network`` is a network mode ("none" for no network); default: the engine's default.

        Raises:
            ImageNotFound: the image does not exist.
        """
        with self._call(f"create a container from {ref}"):
            kwargs: dict[str, Any] = {"command": command, "labels": dict(labels or {})}
            if network:
                kwargs["host_config"] = self.api.create_host_config(network_mode=network)
                kwargs["network_disabled"] = network == "none"
            if entrypoint is not None:
                kwargs["entrypoint"] = entrypoint
            if user is not None:
                kwargs["user"] = user
            return str(self.api.create_container(ref, **kwargs)["Id"])

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        """Unpack the tar ``data`` into ``path`` of a (created or stopped) container.

        Raises:
            PipelineError: the engine refused (e.g. ``path`` does not exist).
        """
        with self._call(f"copy files into container {container[:12]} at {path}"):
            if not self.api.put_archive(container, path, data):
                raise PipelineError(f"copy files into container {container[:12]} at {path}: refused by the engine")

    def start_container(self, container: str) -> None:
        """Start a created container.

        Raises:
            PipelineError: the engine cannot start it (e.g. the command is not in the image).
        """
        with self._call(f"start container {container[:12]}"):
            self.api.start(container)

    def container_output(self, container: str) -> Iterator[str]:
        """The container's stdout and stderr as text lines, followed live until it exits."""
        pending = ""
        with self._call(f"read the output of container {container[:12]}"):
            for chunk in self.api.logs(container, stream=True, follow=True, stdout=True, stderr=True):
                pending += chunk.decode("utf-8", errors="replace")
                *lines, pending = pending.split("\n")
                yield from lines
        if pending:
            yield pending

    def wait_container(self, container: str) -> int:
        """Wait for the container to exit; returns its exit code."""
        with self._call(f"wait for container {container[:12]}"):
            return int(self.api.wait(container).get("StatusCode", -1))

    def remove_container(self, container: str) -> None:
        """Force-remove a container and its anonymous volumes; quiet when it is already gone."""
        try:
            with self._call(f"remove container {container[:12]}"):
                self.api.remove_container(container, force=True, v=True)
        except ImageNotFound:
            pass

    def commit(self, container: str, config: Mapping[str, Any]) -> str:
        """Commit the container as a new untagged image whose configuration is ``config``; returns its ID.

        The daemon fills fields left empty in ``config`` from the container's own
        configuration, so pass every field the image must keep.
        """
        with self._call(f"commit container {container[:12]}"):
            return str(self.api.commit(container, conf=dict(config))["Id"])

    def export_stream(self, container: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """``docker export``: the container's file system as a stream of tar chunks."""
        with self._call(f"export container {container[:12]}"):
            yield from self.api.export(container, chunk_size=chunk_size)

    def archive_stream(self, container: str, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The Engine API's archive of one path of a (created or stopped) container, as tar chunks.

        Raises:
            ImageNotFound: the container or the path does not exist.
        """
        with self._call(f"read {path} of container {container[:12]}"):
            stream, _ = self.api.get_archive(container, path, chunk_size=chunk_size)
            yield from stream

    def layers(self, ref: str) -> list[str]:
        """The image's diffIDs (RootFS.Layers), lowest first.

        Raises:
            ImageNotFound: the image does not exist.
        """
        return list((self.require(ref, "it vanished").attrs.get("RootFS") or {}).get("Layers") or [])

    def remove_image(self, ref: str) -> None:
        """Remove an image or one of its tags (never forced: an image in use stays); quiet when gone."""
        try:
            with self._call(f"remove image {ref}"):
                self.api.remove_image(ref, noprune=False)
        except ImageNotFound:
            pass

    # -- builds ---------------------------------------------------------------------------

    def build(self, req: BuildRequest, *, buildkit_cli: str | None = None) -> str:
        """Build ``req``; returns the untagged image ID.

        Uses the Engine API (classic builder) unless ``buildkit_cli`` names a
        BuildKit-capable docker CLI (see :func:`find_buildkit_cli`).

        Raises:
            BuildFailed: with the failing step and the last lines of its output.
            EngineUnavailable: the daemon went away.
        """
        if buildkit_cli:
            return self._build_cli(req, buildkit_cli)
        return self._build_api(req)

    def _build_api(self, req: BuildRequest) -> str:
        task = req.task
        if req.files is not None:
            source: dict[str, Any] = {"fileobj": req.files.tar(), "custom_context": True,
                                      "dockerfile": DOCKERFILE_NAME}
        else:
            source = {"path": str(req.context), "dockerfile": str(req.dockerfile)}
        with self._call(f"{task}: build"):
            stream = self.api.build(
                **source,
                buildargs=dict(req.buildargs),
                labels=dict(req.labels),
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            try:
                image_id, step, step_no, recent = self._follow_build(task, stream)
            finally:
                stream.close()  # an early error leaves the response open otherwise
        if not image_id:
            raise BuildFailed(_failure(task, step, "the engine reported no image ID", recent), step=step_no)
        return image_id

    def _follow_build(self, task: str, stream: Iterator[dict[str, Any]]) -> tuple[str, str, int | None, deque[str]]:
        step, step_no = "the build's start", None
        recent: deque[str] = deque(maxlen=TAIL)
        image_id = ""
        for event in stream:
            if "error" in event or "errorDetail" in event:
                raise BuildFailed(_failure(task, step, _stream_error(event), recent), step=step_no)
            text = event.get("stream")
            if text:
                for line in _ANSI.sub("", text).rstrip("\n").split("\n"):
                    if not line.strip():
                        continue
                    log.info("%s", line)
                    if line.startswith("Step "):
                        step, recent = line, deque(maxlen=TAIL)
                        number = line[5:].split("/", 1)[0]
                        step_no = int(number) if number.isdigit() else None
                    else:
                        recent.append(line)
                    if line.startswith("Successfully built "):
                        image_id = image_id or line.split()[-1]
            elif event.get("status"):
                log.debug("%s", event["status"])
            aux = event.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
        return image_id, step, step_no, recent

    def _build_cli(self, req: BuildRequest, cli: str) -> str:
        """Build through a docker CLI with DOCKER_BUILDKIT=1; the CLI's output is streamed and kept.

        The pipeline's context is written to a temporary directory first: a tar on
        stdin would make BuildKit copy the Dockerfile and ignore .dockerignore.
        """
        with tempfile.TemporaryDirectory(prefix="pipeline-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            if req.files is not None:
                dockerfile, context = req.files.materialize(Path(tmp)), Path(tmp) / "context"
            else:
                dockerfile, context = req.dockerfile, req.context
            argv: list[str] = [cli, "build", "--progress=plain", "-f", str(dockerfile), "--iidfile", str(iidfile)]
            one_off: list[str] = []
            try:
                for key, value in req.buildargs.items():
                    if key in req.id_args and value.startswith("sha256:"):
                        value = f"pipeline-build-parent:{value.split(':', 1)[1][:32]}-{os.urandom(4).hex()}"
                        self.tag(req.buildargs[key], value)
                        one_off.append(value)
                    argv += ["--build-arg", f"{key}={value}"]
                for key, value in req.labels.items():
                    argv += ["--label", f"{key}={value}"]
                argv.append(str(context))
                env = {**os.environ, "DOCKER_BUILDKIT": "1"}
                if self._host:
                    env["DOCKER_HOST"] = self._host
                try:
                    run(argv, stream=True, env=env)
                except CommandFailed as exc:
                    raise BuildFailed(f"{req.task}: BuildKit build failed: {exc}") from None
                return iidfile.read_text().strip()
            finally:
                for ref in one_off:
                    self.untag(ref)


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


def find_buildkit_cli(preferred: str | None = None) -> str:
    """A docker CLI that builds with BuildKit: one with buildx, or a pre-23 client (BuildKit built in).

    Raises:
        PipelineError: none found, with what to install.
    """
    candidates = [preferred, os.environ.get("PIPELINE_DOCKER_CLI"), "/usr/bin/docker", shutil.which("docker")]
    seen: set[str] = set()
    for cli in candidates:
        if not cli or cli in seen or not Path(cli).is_file():
            continue
        seen.add(cli)
        if _cli_supports_buildkit(cli):
            return cli
    raise PipelineError(
        "builder.buildkit is on but no BuildKit-capable docker CLI was found (tried: "
        + (", ".join(sorted(seen)) or "none")
        + "); install Debian's docker.io (apt-get install docker.io), or docker buildx, "
        "or set PIPELINE_DOCKER_CLI, or set builder.buildkit: false"
    )


def _cli_supports_buildkit(cli: str) -> bool:
    def quiet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], capture_output=True, text=True, timeout=30, check=False)

    try:
        if quiet("buildx", "version").returncode == 0:
            return True
        version = quiet("version", "--format", "{{.Client.Version}}").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) < 23


def _extract(chunks: Iterable[bytes], dest: Path) -> list[Path]:
    """Unpack a tar stream safely into ``dest`` (no absolute paths, no escaping links)."""
    with tempfile.TemporaryFile() as buffer:
        for chunk in chunks:
            buffer.write(chunk)
        buffer.seek(0)
        try:
            with tarfile.open(fileobj=buffer) as archive:
                members = archive.getmembers()
                archive.extractall(dest, filter="data")
        except tarfile.TarError as exc:
            # e.g. a symlink whose target lies outside what was copied (filter="data" refuses it)
            raise PipelineError(f"cannot unpack what was copied out of the image: {exc}") from None
    return sorted({dest / Path(m.name).parts[0] for m in members if m.name and m.name != "."})


def _stream_error(event: Mapping[str, Any]) -> str:
    detail = event.get("errorDetail") or {}
    return str(detail.get("message") or event.get("error") or "unknown error").strip()


def _failure(task: str, step: str, detail: str, recent: Iterable[str]) -> str:
    tail = "\n".join(f"    {line}" for line in recent if line.strip())
    return f"{task}: build failed at {step.strip()}: {detail.strip()}" + (f"\n  last output:\n{tail}" if tail else "")


def _last_status(answer: Any) -> str:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    image_id = ""
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "error" in event:
            raise PipelineError(f"docker import failed: {event['error']}")
        image_id = event.get("status", image_id) or image_id
    return image_id.strip()


def _explanation(exc: docker.errors.APIError) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else str(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("FileNotFoundError", "ConnectionRefusedError", "Connection refused", "No such file or directory"):
        if marker in text:
            return "connection refused" if "Refused" in marker or "refused" in marker else "no such socket"
    return text.splitlines()[0][:200] if text else type(exc).__name__

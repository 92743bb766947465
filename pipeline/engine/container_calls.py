"""Engine calls on containers, for patches and squashes: create, copy in, run, commit, export."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.engine.connection import Connection
from pipeline.errors import ImageNotFound, PipelineError


class ContainerCalls(Connection):
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

    def layer_dirs(self, container: str) -> list[str] | None:
        """The directories of the container's file system on this host (overlay2: every layer's ``diff``).

        None when they cannot be read here: another storage driver, or an engine on another
        host (``DOCKER_HOST`` not a unix socket), whose paths would name this host's files.
        """
        if not self.host.startswith("unix://"):
            return None
        with self._call(f"inspect container {container[:12]}"):
            driver = self.api.inspect_container(container).get("GraphDriver") or {}
        data = driver.get("Data") or {}
        if driver.get("Name") != "overlay2" or not data.get("UpperDir"):
            return None
        dirs = [*(data.get("LowerDir") or "").split(":"), data["UpperDir"]]
        dirs = [d for d in dirs if d]
        return dirs if all(os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK) for d in dirs) else None

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

"""Engine calls on images: inspect, tag, pull, push, import, history, copy out, remove."""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from pipeline.engine.connection import Connection, ImageInfo, _stream_error, parse_repository_tag, required
from pipeline.errors import ImageNotFound, PipelineError, RegistryError

log = logging.getLogger(__name__)


class ImageCalls(Connection):
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
        return required(self.image(ref), ref, hint)

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

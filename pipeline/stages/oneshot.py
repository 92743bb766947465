"""A container that runs one program from an image and is committed as the new image.

The patch stages use it: the commit keeps the source's configuration (see
:func:`container_command`), and the source stays tagged ``REPO:pre-KIND-SHORTID``
before the mission tag moves.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.keys import short
from pipeline.plan import LABEL_NAMESPACE

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

TAIL = 20
# The parts of an image's Config that a commit must carry over (everything but the container's identity).
_CONTAINER_ONLY = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                   "OpenStdin", "StdinOnce", "Image")


@dataclass(frozen=True)
class ContainerRun:
    """A finished container: its ID (still present), exit code and output lines."""

    container: str
    returncode: int
    output: tuple[str, ...]

    def tail(self, lines: int = TAIL) -> str:
        return "\n".join(f"    {line}" for line in self.output[-lines:]) or "    (no output)"


def short_id(image_id: str) -> str:
    """The 12-hex short ID docker prints (no algorithm prefix): names the patch directory and backup tags."""
    return image_id.split(":")[-1][:12]


def repository_of(ref: str) -> str:
    """REPO (with registry host) of ``REPO:TAG``."""
    base = ref.split("@", 1)[0]
    head, _, tail = base.rpartition(":")
    return head if head and "/" not in tail else base


def backup_ref(ref: str, image_id: str, kind: str) -> str:
    """``REPO:pre-KIND-SHORTID``: where the image the mission tag held stays reachable."""
    return f"{repository_of(ref)}:pre-{kind}-{short_id(image_id)}"


def commit_config(source: ImageInfo, labels: Mapping[str, str]) -> dict[str, Any]:
    """The source's configuration for a commit, with ``labels`` added.

    An image with neither Entrypoint nor Cmd gets ``Entrypoint: []`` (the same
    behaviour as none): otherwise the daemon would fill it from the container's.
    """
    config = {k: v for k, v in dict(source.attrs.get("Config") or {}).items() if k not in _CONTAINER_ONLY}
    config["Labels"] = {**dict(config.get("Labels") or {}), **labels}
    if not config.get("Entrypoint") and not config.get("Cmd"):
        config["Entrypoint"] = []
    return config


def container_command(source: ImageInfo, argv: Sequence[str]) -> tuple[list[str] | None, list[str] | None]:
    """(entrypoint, command) that run ``argv`` without leaking into a commit of the container.

    The daemon fills an empty Entrypoint, Cmd, User and WorkingDir of the commit
    from the container, so the program runs as the container's Cmd when the
    image has no Entrypoint but a Cmd (the commit's own Cmd wins), and as its
    Entrypoint otherwise (the commit's own Entrypoint, or ``[]``, wins).
    """
    config = source.attrs.get("Config") or {}
    if not config.get("Entrypoint") and config.get("Cmd"):
        return None, list(argv)
    return list(argv), None


def tar_of(files: Mapping[str, tuple[bytes, int]], top: str) -> bytes:
    """A tar holding ``top/`` (a directory, mode 0755) and ``top/NAME`` for each (data, mode), owned by root."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = PurePosixPath(top).parts
        for depth in range(1, len(parts) + 1):
            info = tarfile.TarInfo(str(PurePosixPath(*parts[:depth])))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_program(engine: Engine, source: ImageInfo, argv: Sequence[str], *, namespace: str,
                files: Mapping[str, bytes] | None = None, stream: bool = True, what: str = "",
                network: str | None = None) -> ContainerRun:
    """Run ``argv`` as root in a new container from ``source``; the container is kept for a commit.

    ``files`` maps a directory in the container to a tar to unpack at ``/`` before the start;
    ``network="none"`` runs it without a network.
    The caller removes the container (:meth:`Engine.remove_container`).

    Raises:
        PipelineError: the container cannot be created or started (e.g. ``argv[0]`` is not in the image).
    """
    entrypoint, command = container_command(source, argv)
    config = source.attrs.get("Config") or {}
    user = "0" if config.get("User") else None  # an empty User is root already and must stay empty
    container = engine.create_container(source.id, entrypoint=entrypoint, command=command, user=user,
                                        labels={LABEL_NAMESPACE: namespace}, network=network)
    try:
        for data in (files or {}).values():
            engine.put_archive(container, "/", data)
        try:
            engine.start_container(container)
        except PipelineError as exc:
            raise PipelineError(f"cannot run {argv[0]} in image {short(source.id)}{what}: {exc}") from None
        lines: list[str] = []
        for line in engine.container_output(container):
            lines.append(line)
            if stream:
                log.info("%s", line)
        returncode = engine.wait_container(container)
    except BaseException:
        engine.remove_container(container)
        raise
    return ContainerRun(container, returncode, tuple(lines))


def commit_and_tag(engine: Engine, container: str, source: ImageInfo, config: Mapping[str, Any],
                   ref: str, kind: str | None) -> tuple[str, tuple[str, ...]]:
    """Commit ``container`` (removed afterwards), keep the old images reachable, then move ``ref``.

    The source, and the image ``ref`` held when that is another one, are tagged
    ``REPO:pre-KIND-SHORTID`` first (none when ``kind`` is None).  Returns (new image ID, those backup refs).
    On any failure the committed image is removed and ``ref`` does not move.
    """
    image_id, tagged = "", False
    try:
        image_id = engine.commit(container, config)
        engine.remove_container(container)
        current = engine.image(ref)
        keep = [source.id] + ([current.id] if current is not None and current.id != source.id else [])
        keep = keep if kind else []
        saved = tuple(backup_ref(ref, kept, kind or "") for kept in keep)
        for kept, backup in zip(keep, saved, strict=False):
            engine.tag(kept, backup)
        engine.tag(image_id, ref)
        tagged = True
        return image_id, saved
    finally:
        engine.remove_container(container)
        if image_id and not tagged:
            engine.remove_image(image_id)

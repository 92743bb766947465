"""Squashing: one pass from the mission image to a verified one-layer image, then the mission tag moves.

``squash:NAME`` exports a container of the mission image, links duplicate
files on the way, and streams the result into ``docker import`` with the
source configuration restored (:mod:`pipeline.stages.relink`).  The layer's
diffID must be the sha256 of the stream sent; only then is the source tagged
REPO:pre-squash-SHORTID and the mission tag moved.  The record
build/squash/NAME.json names the squashed image, the paths it linked under and the
``--keep-archive`` file it wrote; the mission image is current while it has one
layer, the record names its ID, the paths asked for are those, and a
``--keep-archive`` asked for is that file unchanged (an inherited label proves
nothing: a patch keeps the labels of the image it patched).

``export:NAME`` writes the crosslinked image (crosslink:NAME) to an archive
(default build/squash/NAME.tar); ``import:NAME`` imports from that archive when
it was made from the current crosslinked image, else streams; both check the
stored layer against the sha256 of what was sent.  Only ``squash:NAME`` moves
the mission tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pipeline import records
from pipeline.errors import PipelineError
from pipeline.files import file_chunks, file_identity
from pipeline.keys import short
from pipeline.plan import LABEL_NAMESPACE, mission_spec
from pipeline.settings import Settings
from pipeline.stages.crosslink import crosslinked_ref, squash_repo
from pipeline.stages.oneshot import backup_ref
from pipeline.stages.relink import Tamper, finish_config, import_changes, json_label, link_paths, relink_image
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

KIND = "squash"
LABEL_SQUASH = "pipeline.squash"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StepResult:
    """export or import on its own."""

    deployment: str
    step: str
    image_id: str  # the crosslinked image (export) or the imported one (import)
    source_id: str
    path: str  # the archive written or read ("" when streamed)
    seconds: float
    made: bool

    def values(self) -> dict[str, Any]:
        return {"step": self.step, "image": self.image_id, "source": self.source_id, "archive": self.path,
                "seconds": round(self.seconds, 3), "made": self.made}


@dataclass(frozen=True)
class SquashResult:
    deployment: str
    ref: str
    image_id: str
    source_id: str
    backup_ref: str
    size_before: int
    size_after: int
    seconds: Mapping[str, float]
    files_linked: int = 0
    bytes_saved: int = 0

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "source": self.source_id, "backup": self.backup_ref,
                "size_before": self.size_before, "size_after": self.size_after,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "files_linked": self.files_linked, "bytes_saved": self.bytes_saved}


# -- names, records, keys --------------------------------------------------------------------------

def imported_ref(settings: Settings, name: str) -> str:
    return f"{squash_repo(settings, name)}:imported"


def record_path(settings: Settings, name: str) -> Path:
    return records.record_path(settings.build_dir, KIND, name)


def default_archive(settings: Settings, name: str) -> Path:
    return settings.build_dir / KIND / f"{name}.tar"


def _update_record(settings: Settings, name: str, **steps: Any) -> None:
    path = record_path(settings, name)
    data = records.load(path) or {}
    data.update(steps)
    records.save(path, data)


def mission_image(settings: Settings, engine: Engine, name: str) -> tuple[str, ImageInfo]:
    """(mission ref, its image).

    Raises:
        ImageNotFound: naming the tag and what to run.
    """
    ref = mission_spec(settings, settings.deployment(name)).ref
    return ref, engine.require(ref, f"run `doit build:{name}` or `doit pull:{name}` first")


def squash_freshness(settings: Settings, engine: Engine, name: str, paths: Sequence[str] = (),
                     keep_archive: str = "") -> Freshness:
    """Current when the mission image has one layer, build/squash/NAME.json names it as the squash result,
    that squash linked under ``paths`` (or the defaults), and, with ``keep_archive``, wrote that file as it is now."""
    ref, image = mission_image(settings, engine, name)
    layers = len((image.attrs.get("RootFS") or {}).get("Layers") or [])
    if layers != 1:
        return Freshness(False, f"{ref} ({short(image.id)}) has {layers} layers")
    record = records.load(record_path(settings, name)) or {}
    if record.get("squashed") != image.id:
        return Freshness(False, f"{ref} ({short(image.id)}) is not the squash recorded in "
                                f"{display(record_path(settings, name))}")
    if record.get("paths") != link_paths(paths):
        return Freshness(False, f"{ref} was squashed linking under "
                                f"{','.join(record.get('paths') or ['(unrecorded paths)'])}, "
                                f"now asked for {','.join(link_paths(paths))}")
    if _not_kept(keep_archive, record):
        return Freshness(False, f"--keep-archive {display(Path(keep_archive))} was not written by the squash "
                                f"that made {short(image.id)}")
    return Freshness(True, f"{ref} ({short(image.id)}) is already squashed (one layer)")


def _not_kept(keep_archive: str, record: dict[str, Any]) -> bool:
    """``--keep-archive`` was given, and ``record`` did not write that file as it is now."""
    return bool(keep_archive) and (file_identity(Path(keep_archive)) is None
                                   or record.get("kept") != file_identity(Path(keep_archive)))


def import_freshness(settings: Settings, engine: Engine, name: str, archive: str = "",
                     keep_archive: str = "") -> Freshness:
    """Current while NAMESPACE/squash-NAME:imported was made from the current crosslinked image, and
    from exactly ``archive`` as it is now when given (never from another one when not), and while
    ``keep_archive``, when given, holds what that import wrote."""
    ref = imported_ref(settings, name)
    crossed = engine.image(crosslinked_ref(settings, name))
    if crossed is None:
        return Freshness(False, f"image {crosslinked_ref(settings, name)} is missing")
    have = engine.image(ref)
    if have is None:
        return Freshness(False, f"image {ref} is missing")
    if json_label(have, LABEL_SQUASH).get("crosslinked") != crossed.id:
        return Freshness(False, f"{ref} was not imported from {short(crossed.id)}")
    done = (records.load(record_path(settings, name)) or {}).get("import") or {}
    if done.get("image") not in (None, have.id):
        return Freshness(False, f"{ref} ({short(have.id)}) is not the image the last import made")
    given = done.get("given")
    if archive:
        now = file_identity(Path(archive))
        if now is None:
            return Freshness(False, f"--archive {display(Path(archive))} does not exist")
        if given != now:
            return Freshness(False, f"{ref} was not imported from --archive {display(Path(archive))} as it is now")
    elif given:
        return Freshness(False, f"{ref} was imported from --archive {given.get('path')}, not from "
                                f"{short(crossed.id)} itself")
    if _not_kept(keep_archive, done):
        return Freshness(False, f"--keep-archive {display(Path(keep_archive))} was not written by the import of {ref}")
    return Freshness(True, f"{ref} ({short(have.id)}) is current")


def export_freshness(settings: Settings, engine: Engine, name: str, keep_archive: str = "") -> Freshness:
    """Current while the archive exists and was exported from the current crosslinked image."""
    crossed = engine.image(crosslinked_ref(settings, name))
    if crossed is None:
        return Freshness(False, f"image {crosslinked_ref(settings, name)} is missing")
    done = (records.load(record_path(settings, name)) or {}).get("export") or {}
    path = Path(keep_archive) if keep_archive else default_archive(settings, name)
    if done.get("source") != crossed.id or done.get("archive") != str(path.resolve()):
        return Freshness(False, f"{display(path)} was not exported from {short(crossed.id)}")
    if not path.is_file() or path.stat().st_size != done.get("bytes"):
        return Freshness(False, f"{display(path)} is missing or changed")
    return Freshness(True, f"{display(path)} holds the export of {short(crossed.id)}")


# -- export and import -------------------------------------------------------------------------

def _tee(chunks: Iterable[bytes], sink: IO[bytes] | None, counter: list[int],
         digest: hashlib._Hash | None = None) -> Iterator[bytes]:
    for chunk in chunks:
        if sink is not None:
            sink.write(chunk)
        if digest is not None:
            digest.update(chunk)
        counter[0] += len(chunk)
        yield chunk


class _Exported:
    """A created (never started) container of the crosslinked image and its export stream, removed on close."""

    def __init__(self, settings: Settings, engine: Engine, image: ImageInfo) -> None:
        self.engine = engine
        self.container = engine.create_container(image.id, command=["true"], entrypoint=[],
                                                 labels={LABEL_NAMESPACE: settings.namespace}, network="none")

    def chunks(self) -> Iterator[bytes]:
        return self.engine.export_stream(self.container, _CHUNK)

    def __enter__(self) -> _Exported:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.remove_container(self.container)


def write_archive(settings: Settings, engine: Engine, name: str, keep_archive: str = "") -> StepResult:
    """``export:NAME``: write the crosslinked image's file system to an archive (default build/squash/NAME.tar).

    Raises:
        ImageNotFound: the crosslinked image is missing (run crosslink:NAME).
        PipelineError: the archive cannot be written.
    """
    started = time.monotonic()
    crossed = engine.require(crosslinked_ref(settings, name), f"run `doit crosslink:{name}` first")
    path = Path(keep_archive) if keep_archive else default_archive(settings, name)
    if export_freshness(settings, engine, name, keep_archive).current:
        log.info("export:%s: %s is current", name, display(path))
        return StepResult(name, "export", crossed.id, crossed.id, str(path), 0.0, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    counter = [0]
    try:
        with _Exported(settings, engine, crossed) as exported, tmp.open("wb") as sink:
            for _ in _tee(exported.chunks(), sink, counter):
                pass
        os.replace(tmp, path)
    except OSError as exc:
        raise PipelineError(f"export:{name}: cannot write {display(path)}: {exc.strerror}; "
                            "free disk space or give --keep-archive PATH elsewhere") from None
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    _update_record(settings, name, export={"source": crossed.id, "archive": str(path.resolve()),
                                           "bytes": counter[0], "seconds": round(seconds, 3)})
    log.info("export:%s: wrote %s (%d bytes) from %s in %.1f s", name, display(path), counter[0],
             short(crossed.id), seconds)
    return StepResult(name, "export", crossed.id, crossed.id, str(path), seconds, True)


def import_image(settings: Settings, engine: Engine, name: str, source: ImageInfo, *,
                 archive: str = "", keep_archive: str = "",
                 transform: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None) -> StepResult:
    """Import the crosslinked image's file system as NAMESPACE/squash-NAME:imported, ``source``'s config restored.

    Reads ``archive`` when given (or build/squash/NAME.tar when export:NAME made it from the
    current crosslinked image); otherwise streams ``docker export`` into ``docker import``,
    writing ``keep_archive`` as it passes when given.  ``transform`` (tests only) rewrites the stream.

    Raises:
        ImageNotFound: the crosslinked image is missing.
        PipelineError: export or import failed; nothing is tagged.
    """
    started = time.monotonic()
    crossed = engine.require(crosslinked_ref(settings, name), f"run `doit crosslink:{name}` first")
    ref = imported_ref(settings, name)
    if transform is None and import_freshness(settings, engine, name, archive, keep_archive).current:
        have = engine.require(ref, "it vanished while checking")
        log.info("import:%s: %s (%s) is current", name, ref, short(have.id))
        return StepResult(name, "import", have.id, crossed.id, "", 0.0, False)
    label = json.dumps({"source": source.id, "crosslinked": crossed.id}, sort_keys=True)
    changes = import_changes(source.attrs.get("Config") or {}, {LABEL_SQUASH: label})
    from_file = Path(archive) if archive else None
    if from_file is None and export_freshness(settings, engine, name).current:
        from_file = default_archive(settings, name)
    counter = [0]
    sent = hashlib.sha256()
    given = file_identity(from_file) if archive and from_file is not None else None
    if archive and given is None:
        raise PipelineError(f"--archive {display(Path(archive))} does not exist; give the tar that "
                            f"`doit export:{name} --keep-archive FILE` wrote")
    if keep_archive and from_file is not None and Path(keep_archive).resolve() == from_file.resolve():
        raise PipelineError(f"--keep-archive {display(Path(keep_archive))} is the archive being read; "
                            "give another path")
    sink = Path(keep_archive).open("wb") if keep_archive else None
    if from_file is not None:
        log.info("import:%s: importing %s", name, display(from_file))
        try:
            image_id = engine.import_tar(_tee(_maybe(transform, _tee(file_chunks(from_file), sink, [0])), None,
                                              counter, sent), changes)
        finally:
            if sink is not None:
                sink.close()
    else:
        try:
            with _Exported(settings, engine, crossed) as exported:
                log.info("import:%s: streaming docker export of %s into docker import%s", name, short(crossed.id),
                         f" (and {keep_archive})" if keep_archive else "")
                image_id = engine.import_tar(_tee(_maybe(transform, exported.chunks()), sink, counter, sent), changes)
        finally:
            if sink is not None:
                sink.close()
    try:
        layers = engine.layers(image_id)
        if layers != ["sha256:" + sent.hexdigest()]:
            raise PipelineError(f"import:{name}: the engine stored {', '.join(short(x) for x in layers)} but the "
                                f"stream sent hashes to {short('sha256:' + sent.hexdigest())}; nothing was tagged; "
                                "run it again")
        image_id = finish_config(engine, f"import:{name}", image_id, source.attrs.get("Config") or {})
    except BaseException:
        engine.remove_image(image_id)
        raise
    try:
        engine.tag(image_id, ref)
    except BaseException:
        engine.remove_image(image_id)
        raise
    seconds = time.monotonic() - started
    _update_record(settings, name, **{"import": {"source": crossed.id, "image": image_id, "bytes": counter[0],
                                                 "archive": str(from_file or keep_archive or ""),
                                                 "given": given,
                                                 "kept": file_identity(Path(keep_archive)) if keep_archive else None,
                                                 "seconds": round(seconds, 3)}})
    log.info("import:%s: %s (%s) from %d bytes in %.1f s", name, ref, short(image_id), counter[0], seconds)
    return StepResult(name, "import", image_id, crossed.id, str(from_file or keep_archive or ""), seconds, True)


def _maybe(transform: Callable[[Iterator[bytes]], Iterator[bytes]] | None, chunks: Iterator[bytes]) -> Iterator[bytes]:
    return transform(chunks) if transform else chunks


# -- squash ------------------------------------------------------------------------------------

def squash(settings: Settings, engine: Engine, name: str, paths: Sequence[str] = (), keep_archive: str = "", *,
           tamper_export: Tamper | None = None, tamper_sent: Tamper | None = None,
           spool_bound: int | None = None) -> SquashResult:
    """One verified pass (export, link, import) from the mission image, then the tag moves.

    ``tamper_*`` and ``spool_bound`` are for tests.

    Raises:
        ImageNotFound: the mission image is missing.
        PipelineError: the pass failed or the stored layer is not what was sent; the mission tag did not move.
    """
    ref, source = mission_image(settings, engine, name)
    fresh = squash_freshness(settings, engine, name, paths, keep_archive)
    if fresh.current:
        log.info("squash:%s: %s; nothing to do", name, fresh.reason)
        return SquashResult(name, ref, source.id, source.id, "", source.size, source.size, {})
    extra = {"spool_bound": spool_bound} if spool_bound is not None else {}
    made = relink_image(settings, engine, f"squash:{name}", source, paths,
                        {LABEL_SQUASH: json.dumps({"source": source.id}, sort_keys=True)},
                        keep_archive=keep_archive, tamper_export=tamper_export, tamper_sent=tamper_sent, **extra)
    squashed = engine.require(made.image_id, "the import reported an image that does not exist")
    saved = backup_ref(ref, source.id, "squash")
    try:
        engine.tag(source.id, saved)
        engine.tag(squashed.id, ref)
    except BaseException:
        engine.remove_image(squashed.id)
        raise
    seconds = dict(made.seconds)
    counts = made.counts
    result = SquashResult(name, ref, squashed.id, source.id, saved, source.size, squashed.size, seconds,
                          counts.files_linked, counts.bytes_saved)
    _update_record(settings, name, source=source.id, squashed=squashed.id, backup=saved, layer=made.diff_id,
                   listing=made.listing, paths=link_paths(paths),
                   kept=file_identity(Path(keep_archive)) if keep_archive else None,
                   size_before=source.size, size_after=squashed.size,
                   seconds=result.values()["seconds"],
                   counts={"entries": counts.entries, "files": counts.files, "files_linked": counts.files_linked,
                           "bytes_saved": counts.bytes_saved, "hashed_bytes": counts.hashed_bytes,
                           "bytes_sent": counts.bytes_sent})
    log.info("squash:%s: %s is now %s: %.1f MB -> %.1f MB, %d files linked (%s); kept %s as %s", name, ref,
             short(squashed.id), source.size / 1e6, squashed.size / 1e6, counts.files_linked,
             ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), short(source.id), saved)
    return result

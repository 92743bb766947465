"""The one pass shared by crosslink and squash: export -> link duplicates -> import, verified.

A created (never started) container of the source image is exported through
the Engine API; :class:`pipeline.tarstream.Relinker` links duplicates on the
way and its output is streamed into ``docker import``.  Nothing runs inside
the image, so images without a shell or python (busybox, distroless) work.

Verification costs one sha256 of the bytes sent: a layer's diffID is the
sha256 of the uncompressed tar it was made from (moby 20.10
``layer/layer_store.go`` ``applyTar`` hashes every byte read from the import
stream, trailing bytes included; checked on Engine 20.10.24 for plain, gzipped
and padded tars).  The imported image must have exactly that one layer, else it
is removed and nothing is tagged.

The configuration is restored with import changes, plus a metadata-only build
(``FROM imported``, no new layer) for STOPSIGNAL and SHELL, which ``docker
import --change`` refuses on 20.10, and HEALTHCHECK (kept on the build as before).
"""

from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pipeline.engine import BuildRequest
from pipeline.errors import PipelineError
from pipeline.keys import short
from pipeline.plan import LABEL_NAMESPACE
from pipeline.settings import Settings
from pipeline.tarstream import SPOOL_BOUND, Counts, Relinker, Roots, StreamError, count_sizes, file_digest

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

DEFAULT_PATHS = (
    "/opt/conda",
    "/opt/environments",
    "/usr/lib/python3*/site-packages",
    "/usr/lib/python3/dist-packages",
    "/usr/local/lib/python3*/site-packages",
    "/opt/*/lib/python3*/site-packages",
    "/opt/*/*/lib/python3*/site-packages",
)
_CHUNK = 1 << 20
READ_AHEAD = 8  # MiB read from the export ahead of the linker (in the Engine API's 32 KiB pieces)
SEND_AHEAD = 8  # chunks of about _CHUNK made by the linker ahead of the import

Tamper = Callable[[Iterator[bytes]], Iterator[bytes]]


@dataclass(frozen=True)
class Relinked:
    image_id: str  # untagged, configuration restored
    counts: Counts
    listing: str  # sha256 of the file-tree listing made on the way
    diff_id: str
    seconds: Mapping[str, float]


def link_paths(paths: Sequence[str] = ()) -> list[str]:
    """The directories a pass links under (``paths``, else :data:`DEFAULT_PATHS`), normalised and sorted.

    This is what crosslink and squash record and compare in their up-to-date checks.
    """
    chosen = paths or DEFAULT_PATHS
    return sorted({"/" + p.strip().strip("/") for p in chosen if p.strip()})


def json_label(image: ImageInfo, name: str) -> dict[str, Any]:
    """The JSON object in ``image``'s label ``name`` ({} when absent or unreadable: it then matches nothing)."""
    try:
        data = json.loads(image.labels.get(name, "") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# -- import changes ----------------------------------------------------------------------------

def _quoted(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise PipelineError(f"{what} holds a line break, which docker import cannot restore; "
                            "remove it from the image's configuration before squashing")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def import_changes(config: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """Dockerfile instructions that give an imported image the configuration ``config`` (an inspect's Config).

    ENV/LABEL values are quoted with ``$`` escaped (import expands variables); CMD,
    ENTRYPOINT and VOLUME use the JSON form.  See :func:`build_only_instructions` for the rest.
    ``labels`` are added to the image's.

    Raises:
        PipelineError: a value cannot be expressed (a line break in an ENV or LABEL value).
    """
    changes: list[str] = []
    for item in config.get("Env") or ():
        key, _, value = str(item).partition("=")
        changes.append(f"ENV {key}={_quoted(value, f'ENV {key}')}")
    all_labels = {**dict(config.get("Labels") or {}), **dict(labels or {})}
    for key, value in all_labels.items():
        changes.append(f"LABEL {_quoted(key, 'a label name')}={_quoted(str(value), f'LABEL {key}')}")
    if config.get("Entrypoint") is not None:
        changes.append("ENTRYPOINT " + json.dumps(list(config["Entrypoint"])))
    if config.get("Cmd") is not None:
        changes.append("CMD " + json.dumps(list(config["Cmd"])))
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir'].replace('$', chr(92) + '$')}")
    for port in sorted(config.get("ExposedPorts") or {}):
        changes.append(f"EXPOSE {port}")
    if config.get("Volumes"):
        changes.append("VOLUME " + json.dumps(sorted(config["Volumes"])))
    for trigger in config.get("OnBuild") or ():
        changes.append(f"ONBUILD {trigger}")
    return changes


def build_only_instructions(config: Mapping[str, Any]) -> list[str]:
    """STOPSIGNAL, SHELL and HEALTHCHECK, set by a metadata-only build (``FROM imported``, no new layer)."""
    changes: list[str] = []
    if config.get("Shell"):
        changes.append("SHELL " + json.dumps(list(config["Shell"])))
    if config.get("StopSignal"):
        changes.append(f"STOPSIGNAL {config['StopSignal']}")
    health = config.get("Healthcheck") or {}
    test = list(health.get("Test") or [])
    if test[:1] == ["NONE"]:
        changes.append("HEALTHCHECK NONE")
    elif test[:1] in (["CMD"], ["CMD-SHELL"]):
        options = [f"--{flag}={int(health[key])}ns" for flag, key in
                   (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"))
                   if health.get(key)]
        if health.get("Retries"):
            options.append(f"--retries={int(health['Retries'])}")
        command = json.dumps(test[1:]) if test[0] == "CMD" else " ".join(test[1:])
        changes.append(" ".join(["HEALTHCHECK", *options, "CMD", command]))
    return changes


def finish_config(engine: Engine, task: str, image_id: str, config: Mapping[str, Any]) -> str:
    """Apply :func:`build_only_instructions` through a metadata-only build; returns the final image ID."""
    late = build_only_instructions(config)
    if not late:
        return image_id
    with tempfile.TemporaryDirectory(prefix="pipeline-squash-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text("\n".join([f"FROM {image_id}", *late]) + "\n")
        return engine.build(BuildRequest(task, Path(tmp), dockerfile, {}, {}))


# -- the pass ----------------------------------------------------------------------------------

def _tee(chunks: Iterable[bytes], sink: IO[bytes] | None) -> Iterator[bytes]:
    for chunk in chunks:
        if sink is not None:
            sink.write(chunk)
        yield chunk


class _Ahead:
    """Iterate ``chunks`` in a thread, up to ``depth`` items ahead (a bounded queue).

    Three threads share the pass: one reads the export, one links (this class around
    :meth:`Relinker.stream`), and the caller's sends to the import.  Without them one
    thread alternates between waiting for the export, linking and waiting for the
    import, and each waits for the others (measured: 1.9x the pipe's time).
    An exception in the thread is raised where the chunks are read.
    """

    _END = object()

    def __init__(self, chunks: Iterable[bytes], depth: int, name: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._put(exc)

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to stop (it does within 0.2 s of :meth:`close`, unless blocked on the engine)."""
        self._thread.join(timeout)


def _read_ahead(chunks: Iterable[bytes]) -> _Ahead:
    # not coalesced: joining the 32 KiB pieces would copy every byte once more, holding the GIL
    return _Ahead(chunks, READ_AHEAD * 32, "export-read-ahead")


class _Container:
    """A created (never started) container of ``image``, removed on exit."""

    def __init__(self, settings: Settings, engine: Engine, image: ImageInfo) -> None:
        self.engine = engine
        self.id = engine.create_container(image.id, command=["true"], entrypoint=[],
                                          labels={LABEL_NAMESPACE: settings.namespace}, network="none")

    def __enter__(self) -> _Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.remove_container(self.id)


def census(engine: Engine, container: str, roots: Sequence[str]) -> dict[int, int] | None:
    """The sizes that recur among the candidate files, from the layer directories' stat data
    (tarstream/census.py), when the engine's are readable here; a size left out occurs at most once."""
    dirs = engine.layer_dirs(container)
    if dirs is None:
        return None
    started = time.monotonic()
    sizes = count_sizes(dirs, Roots(roots))
    if sizes is None:
        return None
    recurring = {size: n for size, n in sizes.items() if n > 1}  # what the pass keeps: one entry per such size
    log.info("census of %d layer directories: %d candidate files, %d sizes that recur (%.1f s)", len(dirs),
             sum(sizes.values()), len(recurring), time.monotonic() - started)
    return recurring


def _failed(what: str, source: ImageInfo, exc: StreamError) -> PipelineError:
    return PipelineError(f"{what}: the export stream of {short(source.id)} {exc}; nothing was tagged; "
                         "run it again, and if it repeats check the engine (docker info, free disk space)")


def scan(settings: Settings, engine: Engine, what: str, source: ImageInfo, paths: Sequence[str] = (),
         spool_bound: int = SPOOL_BOUND) -> Relinker:
    """The pass without an import (``--dry-run``): what would be linked.

    Raises:
        PipelineError: the export failed or its stream is corrupt.
    """
    roots = paths or DEFAULT_PATHS
    with _Container(settings, engine, source) as container:
        relinker = Relinker(_read_ahead(engine.export_stream(container.id, _CHUNK)), roots,
                            spool_bound=spool_bound, census=census(engine, container.id, roots),
                            reread=lambda path: file_digest(engine.archive_stream(container.id, path)))
        try:
            for _ in relinker.stream():
                pass
        except StreamError as exc:
            raise _failed(what, source, exc) from None
    return relinker


def relink_image(settings: Settings, engine: Engine, what: str, source: ImageInfo, paths: Sequence[str],
                 labels: Mapping[str, str], *, keep_archive: str = "", spool_bound: int = SPOOL_BOUND,
                 tamper_export: Tamper | None = None, tamper_sent: Tamper | None = None) -> Relinked:
    """One pass from ``source`` to an untagged one-layer image with ``source``'s configuration plus ``labels``.

    ``keep_archive`` also writes the tar sent; ``tamper_*`` (tests only) rewrite the
    export stream or the stream sent.

    Raises:
        PipelineError: the export stream is truncated or corrupt, the import failed,
            or the layer stored is not the stream sent; no image is left behind.
    """
    config = source.attrs.get("Config") or {}
    changes = import_changes(config, labels)
    started = time.monotonic()
    sink = Path(keep_archive).open("wb") if keep_archive else None
    try:
        with _Container(settings, engine, source) as container:
            roots = paths or DEFAULT_PATHS
            sizes = census(engine, container.id, roots)  # before the export starts: stat data only
            reading = _read_ahead(engine.export_stream(container.id, _CHUNK))
            chunks: Iterator[bytes] = iter(reading)
            if tamper_export is not None:
                chunks = tamper_export(chunks)
            relinker = Relinker(chunks, roots, spool_bound=spool_bound, census=sizes,
                                reread=lambda path: file_digest(engine.archive_stream(container.id, path)))
            sent: Iterator[bytes] = _tee(relinker.stream(), sink)
            if tamper_sent is not None:
                sent = tamper_sent(sent)
            linking = _Ahead(sent, SEND_AHEAD, "link")
            log.info("%s: streaming docker export of %s through the linker into docker import%s", what,
                     short(source.id), f" (and {keep_archive})" if keep_archive else "")
            try:
                image_id = engine.import_tar(iter(linking), changes)
            except StreamError as exc:
                raise _failed(what, source, exc) from None
            finally:
                linking.close()
                reading.close()
                linking.join(5.0)  # it may still write the --keep-archive file: let it stop first
    finally:
        if sink is not None:
            sink.close()
    passed = time.monotonic() - started
    try:
        layers = engine.layers(image_id)
        if not relinker.done or layers != [relinker.sent_sha256]:
            raise PipelineError(
                f"{what}: the engine stored {', '.join(short(x) for x in layers) or 'no layer'} but the stream sent "
                f"hashes to {short(relinker.sent_sha256)}; the import was damaged on the way; nothing was tagged; "
                "run it again")
        checked = time.monotonic() - started - passed
        final = finish_config(engine, what, image_id, config)
    except BaseException:
        engine.remove_image(image_id)
        raise
    seconds = {"export+link+import": passed, "verify": checked, "config": time.monotonic() - started - passed - checked}
    c = relinker.counts
    log.info("%s: %d entries, %d files, %d linked (%d bytes saved), %d hashed bytes, %d spooled, %d reread, "
             "%d not hashed (size counted once); layer %s verified", what, c.entries, c.files, c.files_linked,
             c.bytes_saved, c.hashed_bytes, c.spooled, c.reread, c.unhashed, short(relinker.sent_sha256))
    return Relinked(final, c, relinker.listing_sha256, relinker.sent_sha256, seconds)

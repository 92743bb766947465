"""Patching: run a script as root in a container from an image and commit the result as the new image.

Each patch leaves its record inside the image, in ``/opt/patches/SOURCE_ID/``
(the 12-hex short ID of the image it patched): ``metadata.yaml``,
``source-inspect.json``, the script and ``patch.log``.  Patches stack: every
one adds its own directory.

The committed image keeps the source's configuration (User, Cmd, Entrypoint,
WorkingDir, Env, Labels, ExposedPorts, Volumes, StopSignal, Healthcheck, ...):
it is read from the source's inspect and passed as the commit's config, plus
one ``pipeline.patch`` label.  The container is set up so that the daemon,
which fills empty config fields from the container's own, has nothing of ours
to fill in (see :func:`container_command`).

Nothing is lost on failure: the source stays tagged ``REPO:pre-patch-SHORTID``
before the mission tag moves, and a failing script leaves no image behind.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.errors import CommandFailed, ConfigError, ImageNotFound
from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Settings
from pipeline.stages.oneshot import (
    commit_and_tag,
    commit_config,
    run_program,
    short_id,
    tar_of,
)
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

PATCH_ROOT = "/opt/patches"
LABEL_PATCH = "pipeline.patch"
# Labels that state what a step made of the file system; a patch makes them false, so they are emptied (a
# commit cannot drop a label: the daemon fills missing ones from the container's).  pipeline.inputs is kept
# on purpose: build:NAME stays up to date over a patch.
STEP_LABELS = ("pipeline.squash", "pipeline.crosslink")
# stderr joins stdout in the container: one pipe keeps their order (the daemon reads two pipes concurrently).
_WRAPPER = 'cd "$1" && exec "$2" 2>&1'


@dataclass(frozen=True)
class PatchResult:
    deployment: str
    ref: str
    image_id: str
    source_id: str
    backup_ref: str
    directory: str
    seconds: float
    size: int = 0
    source_size: int = 0

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "source": self.source_id, "backup": self.backup_ref,
                "directory": self.directory, "seconds": round(self.seconds, 3), "size": self.size,
                "source_size": self.source_size}


@dataclass(frozen=True)
class PatchRecord:
    directory: str
    time: str
    author: str
    description: str
    source_id: str
    source_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryResult:
    ref: str
    image_id: str
    patches: tuple[PatchRecord, ...] = field(default_factory=tuple)

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "patches": [p.directory for p in self.patches]}


# -- patch -------------------------------------------------------------------------------------

def utc_now() -> str:
    # Microseconds: patches applied within one second must still list in order.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def source_image(settings: Settings, engine: Engine, name: str, source: str | None) -> tuple[str, ImageInfo]:
    """(mission ref, the image to patch: ``source`` or the image the mission tag holds).

    Raises:
        ImageNotFound: naming the image and what to run.
    """
    ref = mission_spec(settings, settings.deployment(name)).ref
    if source:
        return ref, engine.require(source, "pull or build it first, or leave out --source")
    return ref, engine.require(ref, f"run `doit build:{name}` or `doit pull:{name}` first")


def patch_image(settings: Settings, engine: Engine, name: str, script: Path, author: str, description: str,
                source: str | None = None, extra: Mapping[str, tuple[bytes, int]] | None = None,
                script_hint: str = "give an existing file with --script") -> PatchResult:
    """Run ``script`` as root in a container from the source image and tag the commit as the mission image.

    ``script_hint`` says what to do when the script cannot be read: only ``patch`` has ``--script``.
    Messages do not name the task: the boundary does (patch_os and patch_ssl come through here too).

    Raises:
        ConfigError: no script, author or description, or the script cannot be read.
        ImageNotFound: the source image does not exist.
        CommandFailed: the script exited non-zero (the tail of its output in the message); nothing was tagged.
    """
    started = time.monotonic()
    if not author.strip() or not description.strip():
        raise ConfigError("give --author and --description (they are recorded in the image)")
    try:
        body = script.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the patch script {display(script)}: {exc.strerror}; {script_hint}") from None
    ref, src = source_image(settings, engine, name, source)
    directory = f"{PATCH_ROOT}/{short_id(src.id)}"
    when = utc_now()
    script_name = script.name or "patch-script"
    metadata = {"author": author, "description": description, "time": when, "source_id": src.id,
                "source_tags": list(src.tags), "script": script_name, "deployment": name}
    files = {
        "metadata.yaml": (yaml.safe_dump(metadata, sort_keys=False).encode(), 0o644),
        "source-inspect.json": (json.dumps(src.attrs, indent=2, sort_keys=True).encode() + b"\n", 0o644),
        script_name: (body, 0o755),
        **dict(extra or {}),
    }
    log.info("patch:%s: running %s as root in a container from %s (%s)", name, display(script), short(src.id),
             ", ".join(src.tags) or "untagged")
    run = run_program(engine, src, ["/bin/sh", "-c", _WRAPPER, "sh", directory, f"./{script_name}"],
                      namespace=settings.namespace, files={directory: tar_of(files, directory.lstrip("/"))},
                      what=" (patches need /bin/sh in the image)")
    log_text = ("\n".join(run.output) + "\n").encode()
    if run.returncode != 0:
        engine.remove_container(run.container)
        raise CommandFailed(f"patch script {display(script)} exited with {run.returncode} in a container from "
                            f"{short(src.id)}; no image made, {ref} unchanged; last output:\n{run.tail()}")
    engine.put_archive(run.container, "/", tar_of({"patch.log": (log_text, 0o644)}, directory.lstrip("/")))
    label = json.dumps({"time": when, "author": author, "description": description, "source": src.id},
                       sort_keys=True)
    config = commit_config(src, {LABEL_PATCH: label})
    config["Labels"].update({k: "" for k in STEP_LABELS if k in config["Labels"]})
    image_id, backups = commit_and_tag(engine, run.container, src, config, ref, "patch")
    saved = backups[0]
    new = engine.require(image_id, "the commit reported an image that does not exist")
    seconds = time.monotonic() - started
    log.info("patch:%s: %s is now %s (patched %s, kept as %s) in %.1f s", name, ref, short(image_id),
             short(src.id), saved, seconds)
    return PatchResult(name, ref, image_id, src.id, saved, directory, seconds, new.size, src.size)


# Programs the pipeline runs inside images ship with it as package data (pipeline/programs/), never
# read from a deployments/ tree: that holds only the user's files.
PROGRAMS = importlib.resources.files("pipeline") / "programs"


def patch_os(settings: Settings, engine: Engine, name: str, author: str, description: str = "",
             source: str | None = None) -> PatchResult:
    """Patch with the shipped OS-upgrade program (pipeline/programs/apt-upgrade).

    A project's own deployments/common/scripts/apt-upgrade, when it has one, is run instead.

    Raises:
        ConfigError: the script is missing; see :func:`patch_image` for the rest.
    """
    own = settings.deployments_dir / "common" / "scripts" / "apt-upgrade"
    hint = (f"put the OS-upgrade script at {display(own)} "
            "or reinstall the pipeline, which ships one; or run your own with `doit patch:NAME --script FILE`")
    with importlib.resources.as_file(PROGRAMS / "apt-upgrade") as shipped:
        script = own if own.is_file() else shipped
        return patch_image(settings, engine, name, script, author, description or "OS upgrade", source,
                           script_hint=hint)


SSL_SCRIPT = """#!/bin/sh
# Install the CA certificates in ./certs/ into the image's trust store (doit patch_ssl).
set -eu
if command -v update-ca-certificates >/dev/null 2>&1; then
    mkdir -p /usr/local/share/ca-certificates/pipeline
    cp certs/*.crt /usr/local/share/ca-certificates/pipeline/
    update-ca-certificates
else
    mkdir -p /etc/ssl/certs
    cat certs/*.crt >> /etc/ssl/certs/ca-certificates.crt
    echo "no update-ca-certificates: appended $(ls certs | wc -l) certificate(s) to /etc/ssl/certs/ca-certificates.crt"
fi
if [ -x /opt/common-scripts/fix-certs ]; then
    /opt/common-scripts/fix-certs
fi
"""


def split_pem(text: str) -> list[str]:
    """The PEM certificates of a bundle, one string each."""
    certs, current = [], []
    for line in text.splitlines():
        if "-----BEGIN CERTIFICATE-----" in line:
            current = [line]
        elif current:
            current.append(line)
            if "-----END CERTIFICATE-----" in line:
                certs.append("\n".join(current) + "\n")
                current = []
    return certs


def patch_ssl(settings: Settings, engine: Engine, name: str, author: str, description: str = "",
              bundle: Path | None = None, source: str | None = None) -> PatchResult:
    """Install a CA bundle (default: certs.target) into the image's trust store.

    Raises:
        ConfigError: the bundle cannot be read or holds no certificate.
    """
    path = bundle or settings.certs.target
    try:
        certs = split_pem(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ConfigError(f"cannot read the CA bundle {display(path)}: {exc.strerror}; "
                          "run `doit certs` or give --bundle FILE") from None
    if not certs:
        raise ConfigError(f"{display(path)} holds no BEGIN CERTIFICATE block; give a PEM bundle")
    extra = {f"certs/pipeline-ca-{i:03d}.crt": (pem.encode(), 0o644) for i, pem in enumerate(certs)}
    with tempfile.TemporaryDirectory(prefix="pipeline-ssl-") as tmp:
        script = Path(tmp) / "install-ca-bundle"
        script.write_text(SSL_SCRIPT)
        return patch_image(settings, engine, name, script, author,
                           description or f"CA bundle {path.name} ({len(certs)} certificates)", source, extra)


# -- history -----------------------------------------------------------------------------------

def patch_history(settings: Settings, engine: Engine, name: str, image: str | None = None) -> HistoryResult:
    """The patches recorded in the image (default: the mission image), oldest first.

    Raises:
        ImageNotFound: the image does not exist.
    """
    ref = image or mission_spec(settings, settings.deployment(name)).ref
    info = engine.require(ref, f"run `doit build:{name}` or `doit pull:{name}` first, or give --image")
    records: list[PatchRecord] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-patches-") as tmp:
        try:
            engine.copy_from_image(info.id, PATCH_ROOT, Path(tmp))
        except ImageNotFound:
            log.info("%s (%s) has no %s: no patches recorded", ref, short(info.id), PATCH_ROOT)
            return HistoryResult(ref, info.id)
        for meta in sorted(Path(tmp).glob("patches/*/metadata.yaml")):
            records.append(_record(meta))
    records.sort(key=lambda r: (r.time, r.directory))
    log.info("%s (%s): %d patch(es)", ref, short(info.id), len(records))
    for number, rec in enumerate(records, 1):
        log.info("%d. %s  %s  %s  (source %s, %s/%s)", number, rec.time, rec.author, rec.description,
                 short(rec.source_id), PATCH_ROOT, rec.directory)
    return HistoryResult(ref, info.id, tuple(records))


def _record(meta: Path) -> PatchRecord:
    try:
        data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    tags: Iterable[str] = data.get("source_tags") or ()
    return PatchRecord(meta.parent.name, str(data.get("time", "?")), str(data.get("author", "?")),
                       str(data.get("description", "?")), str(data.get("source_id", "?")), tuple(tags))

"""The root stage: the image at the bottom of the chain, from an image, a rootfs tarball or debootstrap."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline import keystore
from pipeline.config import Settings
from pipeline.engine import BuildRequest, Engine
from pipeline.errors import CommandFailed, ConfigError, PipelineError
from pipeline.hashing import FileHasher
from pipeline.keys import InputKey
from pipeline.plan import LABEL_INPUTS, LABEL_NAMESPACE, LABEL_STAGE
from pipeline.run import run
from pipeline.stages.images import compare
from pipeline.stages.results import Freshness, ImageResult

log = logging.getLogger(__name__)

TASK = "root"


def root_key(settings: Settings, engine: Engine, hasher: FileHasher) -> InputKey:
    """The root's inputs: the source image's ID, the tarball's content, or the debootstrap settings."""
    root = settings.root
    if root.image:
        source = engine.image(root.image)
        return InputKey.of({"image": f"{root.image} {source.id if source else '(not present locally)'}"})
    if root.rootfs:
        try:
            digest = hasher.digest(root.rootfs)
        except OSError as exc:
            raise ConfigError(f"root.rootfs {root.rootfs}: cannot read: {exc}") from None
        return InputKey.of({"rootfs": f"{root.rootfs} {digest}"})
    boot = root.bootstrap
    assert boot is not None
    include = ",".join(boot.include)
    return InputKey.of({"bootstrap": f"{boot.suite} {boot.variant} {boot.mirror} include={include}"})


def root_freshness(settings: Settings, engine: Engine, hasher: FileHasher) -> Freshness:
    image = engine.image(settings.root_ref)
    if image is None:
        return Freshness(False, f"image {settings.root_ref} is missing")
    return compare(settings, TASK, image, root_key(settings, engine, hasher))


def build_root(settings: Settings, engine: Engine, hasher: FileHasher) -> ImageResult:
    """Make the root image and tag it ``NAMESPACE/root:latest``, unless it is current.

    Raises:
        ImageNotFound: ``root.image`` is absent and cannot be pulled.
        CommandFailed: debootstrap or tar failed, or is not installed.
        PipelineError: not root (debootstrap), or the engine failed.
    """
    started = time.monotonic()
    root = settings.root
    if root.image and engine.image(root.image) is None:
        engine.pull(root.image)
    key = root_key(settings, engine, hasher)
    existing = engine.image(settings.root_ref)
    if existing is not None and existing.labels.get(LABEL_INPUTS) == key.digest:
        keystore.save(settings.build_dir, TASK, key)
        return ImageResult(TASK, settings.root_ref, existing.id, key.digest, False, 0.0, existing.size)
    labels = {LABEL_INPUTS: key.digest, LABEL_STAGE: TASK, LABEL_NAMESPACE: settings.namespace}
    if root.image:
        image_id = _from_image(settings, engine, root.image, labels)
    elif root.rootfs:
        log.info("root: importing %s", root.rootfs)
        image_id = engine.import_tar(str(root.rootfs), _label_changes(labels))
    else:
        image_id = _bootstrap(settings, engine, labels)
    engine.tag(image_id, settings.root_ref)
    keystore.save(settings.build_dir, TASK, key)
    info = engine.require(settings.root_ref, "the root image vanished right after tagging")
    seconds = time.monotonic() - started
    return ImageResult(
        TASK, settings.root_ref, image_id, key.digest, True, seconds, info.size, existing.size if existing else 0
    )


def _label_changes(labels: dict[str, str]) -> list[str]:
    return [f"LABEL {name}={value}" for name, value in labels.items()]


def _from_image(settings: Settings, engine: Engine, source: str, labels: dict[str, str]) -> str:
    with tempfile.TemporaryDirectory(prefix="pipeline-root-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(f"FROM {source}\n")
        return engine.build(BuildRequest(TASK, Path(tmp), dockerfile, {}, labels))


def _bootstrap(settings: Settings, engine: Engine, labels: dict[str, str]) -> str:
    boot = settings.root.bootstrap
    assert boot is not None
    if os.geteuid() != 0:
        raise PipelineError("root.bootstrap needs root (debootstrap creates device files); run as root or use root.rootfs")
    if shutil.which("debootstrap") is None:
        raise CommandFailed("root.bootstrap needs debootstrap: apt-get install -y debootstrap (scripts/setup does it)")
    cache = settings.build_dir / "cache" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=settings.build_dir))
    target = workdir / "rootfs"
    try:
        argv = ["debootstrap", f"--variant={boot.variant}", f"--cache-dir={cache.resolve()}"]
        if boot.include:
            argv.append("--include=" + ",".join(boot.include))
        run([*argv, boot.suite, target, boot.mirror], stream=True, hint="apt-get install -y debootstrap")
        # The apt lists and downloaded debs are not wanted in the image.
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for child in (target / junk).glob("*"):
                if child.is_file():
                    child.unlink()
        log.info("root: importing the bootstrapped tree")
        return engine.import_tar(_tar_stream(target), [*_label_changes(labels), 'CMD ["/bin/bash"]'])
    finally:
        _remove_tree(workdir)


def _tar_stream(directory: Path) -> Iterator[bytes]:
    proc = subprocess.Popen(  # noqa: S603
        ["tar", "--numeric-owner", "-C", str(directory), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            yield chunk
        if proc.wait() != 0:
            raise CommandFailed(f"tar of {directory} failed: {proc.stderr.read().decode(errors='replace')[-500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _remove_tree(path: Path) -> None:
    """Remove a bootstrap tree, unmounting anything an interrupted debootstrap left mounted inside."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    inside = sorted((m.split()[1] for m in mounts if m.split()[1].startswith(str(path.resolve()) + "/")), reverse=True)
    for mount in inside:
        subprocess.run(["umount", "-l", mount], check=False)  # noqa: S603,S607
    shutil.rmtree(path, ignore_errors=True)

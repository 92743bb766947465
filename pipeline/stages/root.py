"""The root stage: the image at the bottom of the chain, from an image, a rootfs tarball or debootstrap."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import CommandFailed, ConfigError, PipelineError
from pipeline.hashing import FileHasher
from pipeline.keys import InputKey
from pipeline.plan import LABEL_INPUTS, LABEL_NAMESPACE, LABEL_STAGE
from pipeline.settings import Settings
from pipeline.stages.image_check import compare
from pipeline.stages.results import Freshness, ImageResult

if TYPE_CHECKING:
    from pipeline.engine import Engine

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
        # The content only, not the path: checkouts on other runners live elsewhere.
        return InputKey.of({"rootfs": digest})
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
    from pipeline.stages.images import produce  # the build side: only when the stage runs

    root = settings.root
    if root.image and engine.image(root.image) is None:
        engine.pull(root.image)
    key = root_key(settings, engine, hasher)
    labels = {LABEL_INPUTS: key.digest, LABEL_STAGE: TASK, LABEL_NAMESPACE: settings.namespace}

    def make() -> str:
        if root.image:
            return _from_image(settings, engine, root.image, labels)
        if root.rootfs:
            log.info("root: importing %s", root.rootfs)
            return engine.import_tar(str(root.rootfs), _label_changes(labels))
        return _bootstrap(settings, engine, labels)

    return produce(settings, engine, TASK, settings.root_ref, key, make)


def _label_changes(labels: dict[str, str]) -> list[str]:
    return [f"LABEL {name}={value}" for name, value in labels.items()]


def _from_image(settings: Settings, engine: Engine, source: str, labels: dict[str, str]) -> str:
    from pipeline.engine import BuildRequest

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
    from pipeline.run import run

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
    proc = subprocess.Popen(
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
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)

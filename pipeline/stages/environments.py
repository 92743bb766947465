"""Files out of a mission image: cp, and the pinned environments (env_list, env_export).

Everything is read with engine.copy_from_image (a stopped container, always
removed): no command runs in the image, so these work on any image, with or
without a shell.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipeline.containers import as_command
from pipeline.errors import ImageNotFound, PipelineError
from pipeline.settings import Settings
from pipeline.stages.hands_on import mission_image

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

SPEC_FILE = "requirements.txt"


@dataclass(frozen=True)
class CopyResult:
    deployment: str
    ref: str
    source: str
    dest: Path
    kind: str  # "file" or "directory"

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "source": self.source, "dest": str(self.dest), "kind": self.kind}


@dataclass(frozen=True)
class EnvList:
    deployment: str
    ref: str
    freeze: str
    names: tuple[str, ...]

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "freeze": self.freeze, "environments": list(self.names)}


@dataclass(frozen=True)
class EnvExport:
    deployment: str
    ref: str
    environment: str
    path: str  # in the image
    text: str
    output: Path | None = None

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "environment": self.environment, "path": self.path,
                "output": str(self.output) if self.output else ""}


# -- cp ---------------------------------------------------------------------------------------

def copy_out(settings: Settings, engine: Engine, name: str, words: Sequence[str] | None) -> CopyResult:
    """Copy SRC (file or directory in the image) to DEST on the host, like ``docker cp``.

    DEST an existing directory: the copy goes inside it under SRC's name.  Otherwise
    the copy is named DEST (its parent folders are created); an existing file is
    replaced, an existing directory receives the copied directory's contents.

    Raises:
        PipelineError: not exactly two paths, SRC is `/`, or a file/directory clash at DEST.
        ImageNotFound: the image is not built, or SRC is not in it.
    """
    paths = as_command(words or ())
    if len(paths) != 2:
        raise PipelineError(f"give a path in the image and a host path: doit cp:{name} -- SRC DEST")
    source = str(PurePosixPath("/", paths[0]))  # relative to the image's root, like docker cp
    base = PurePosixPath(source).name
    if not base:
        raise PipelineError(f"give a file or directory in the image, not {source}")
    dest = Path(paths[1]).expanduser()
    _, ref = mission_image(settings, engine, name)
    target = dest / base if dest.is_dir() else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pipeline-cp-") as tmp:
        written = engine.copy_from_image(ref, source, Path(tmp))
        if len(written) != 1:
            raise PipelineError(f"copying {source} out of {ref} gave {len(written)} entries instead of one")
        copied = written[0]
        kind = "directory" if copied.is_dir() and not copied.is_symlink() else "file"
        _place(copied, target)
    log.info("copied %s %s from %s to %s", kind, source, ref, target)
    return CopyResult(name, ref, source, target, kind)


def _place(copied: Path, target: Path) -> None:
    if not target.exists() and not target.is_symlink():
        os.replace(copied, target)
    elif target.is_dir() and not target.is_symlink():
        if not copied.is_dir() or copied.is_symlink():
            raise PipelineError(f"{target} is a directory; cannot replace it with the file {copied.name}")
        shutil.copytree(copied, target, symlinks=True, dirs_exist_ok=True)
    elif copied.is_dir() and not copied.is_symlink():
        raise PipelineError(f"{target} is a file; cannot replace it with the directory {copied.name}")
    else:
        os.replace(copied, target)


# -- env_list / env_export ---------------------------------------------------------------------

def environment_names(engine: Engine, ref: str, freeze: str) -> tuple[str, ...]:
    """The subfolders of ``freeze`` in the image that hold a requirements.txt (none when it is absent)."""
    with tempfile.TemporaryDirectory(prefix="pipeline-envs-") as tmp:
        try:
            written = engine.copy_from_image(ref, freeze, Path(tmp))
        except ImageNotFound:
            return ()
        folder = written[0] if written else Path(tmp)
        if not folder.is_dir():
            return ()
        return tuple(sorted(d.name for d in folder.iterdir() if d.is_dir() and (d / SPEC_FILE).is_file()))


def list_environments(settings: Settings, engine: Engine, name: str) -> EnvList:
    """Print the environments pinned in the image, one name per line.

    Raises:
        ImageNotFound: the image is not built.
    """
    dep, ref = mission_image(settings, engine, name)
    names = environment_names(engine, ref, dep.freeze)
    if names:
        for env in names:
            log.info("%s", env)
    else:
        log.info("no environments in %s: no %s/NAME/%s (the deployment's `freeze` folder)", ref, dep.freeze, SPEC_FILE)
    return EnvList(name, ref, dep.freeze, names)


def export_environment(settings: Settings, engine: Engine, name: str, words: Sequence[str] | None,
                       output: str | None = None) -> EnvExport:
    """Print one environment's pinned spec (FREEZE/ENV/requirements.txt), or write it to ``output``.

    Raises:
        PipelineError: no environment named, or it is not in the image (the message lists the available ones).
        ImageNotFound: the image is not built.
    """
    args = as_command(words or ())
    if len(args) != 1:
        raise PipelineError(f"give one environment: doit env_export:{name} -- ENV (doit env_list:{name} lists them)")
    env = args[0]
    if not env or "/" in env or env in (".", ".."):
        raise PipelineError(f"environment {env!r} is not a name; doit env_list:{name} lists them")
    dep, ref = mission_image(settings, engine, name)
    path = str(PurePosixPath(dep.freeze, env, SPEC_FILE))
    with tempfile.TemporaryDirectory(prefix="pipeline-env-") as tmp:
        try:
            engine.copy_from_image(ref, path, Path(tmp))
        except ImageNotFound:
            available = environment_names(engine, ref, dep.freeze)
            raise PipelineError(
                f"environment '{env}' is not in image {ref} (no {path}); available: {', '.join(available) or 'none'}"
            ) from None
        text = (Path(tmp) / SPEC_FILE).read_text(errors="replace")
    target = Path(output).expanduser() if output else None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        log.info("wrote %s from %s:%s", target, ref, path)
    else:
        log.info("%s", text.rstrip("\n"))
    return EnvExport(name, ref, env, path, text, target)

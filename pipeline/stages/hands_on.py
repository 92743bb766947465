"""Hands-on containers from a mission image: exec, sh, root_sh, dev and run_lab.

Each function checks that the deployment's image exists (it never builds it),
runs one container through pipeline.containers (named, labelled with the
namespace, carrying the configured run args) and returns a small result.  Only
``dev`` keeps its container; every other one is removed on exit, failure and
Ctrl-C.  No doit here: pipeline/tasks/hands_on_adapters.py adapts these to tasks.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.containers import (
    ContainerSpec,
    Mount,
    as_command,
    docker_exit_problem,
    run_attached,
    run_captured,
    unique_name,
)
from pipeline.errors import CommandFailed, PipelineError
from pipeline.plan import LABEL_NAMESPACE
from pipeline.run import CommandResult
from pipeline.settings import LAB_PORT, Deployment, Settings

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

# bash when the image has it, else sh; run as the entrypoint so the image's own ENTRYPOINT
# (tini, a start script) does not get in the way of an interactive shell.
SHELL_ENTRYPOINT = "/bin/sh"
SHELL_SCRIPT = "command -v bash >/dev/null 2>&1 && exec bash; exec sh"
# Where `dev` mounts the deployment's folders (host folder -> path in the container).
DEV_ENVIRONMENTS = "/opt/environments"
DEV_FROZEN = "/opt/env-frozen"
DEV_COMMON_SCRIPTS = "/opt/common-scripts"
COMMON_LAYER = "common"


@dataclass(frozen=True)
class ContainerRun:
    """One finished hands-on container."""

    deployment: str
    ref: str
    command: tuple[str, ...]
    returncode: int
    container: str | None = None  # the name of a kept container (dev)

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "command": shlex.join(self.command), "returncode": self.returncode,
                "container": self.container or ""}


@dataclass(frozen=True)
class LabRun:
    deployment: str
    ref: str
    url: str
    returncode: int
    interrupted: bool

    def values(self) -> dict[str, Any]:
        return {"ref": self.ref, "url": self.url, "returncode": self.returncode, "interrupted": self.interrupted}


# -- shared -----------------------------------------------------------------------------------

def mission_image(settings: Settings, engine: Engine, name: str) -> tuple[Deployment, str]:
    """The deployment and its mission image's tag, which must exist.

    Raises:
        ConfigError: the deployment is not selected.
        ImageNotFound: "image REF does not exist; run `doit build:NAME` first".
    """
    dep = settings.deployment(name)
    ref = dep.image_ref(settings.environment)
    engine.require(ref, f"run `doit build:{name}` first")
    return dep, ref


def container_spec(settings: Settings, dep: Deployment, ref: str, **fields: Any) -> ContainerSpec:
    """A container from the mission image with the configured run args and the namespace label."""
    return ContainerSpec(image=ref, extra_args=dep.run_args, labels={LABEL_NAMESPACE: settings.namespace}, **fields)


def _exit_message(what: str, returncode: int, result: CommandResult | None = None) -> str:
    """"`CMD` exited with N", plus docker's own reason when docker (not the command) failed."""
    text = f"{what} exited with {returncode}"
    problem = docker_exit_problem(result) if result is not None else None
    from_docker = result is not None and (returncode == 125 or "Error response from daemon" in result.tail(3))
    return f"{text}: {problem}" if problem and from_docker else text


# -- exec -------------------------------------------------------------------------------------

def exec_command(settings: Settings, engine: Engine, name: str, words: Sequence[str] | None) -> ContainerRun:
    """Run ``words`` in a fresh container from the mission image, output streamed.

    Raises:
        PipelineError: no command given.
        ImageNotFound: the image is not built.
        CommandFailed: the command exited non-zero (its exit code is in the message).
    """
    command = as_command(words or ())
    if not command:
        raise PipelineError(f"give a command: doit exec:{name} -- CMD ARGS")
    dep, ref = mission_image(settings, engine, name)
    spec = container_spec(settings, dep, ref, command=command, name=unique_name(f"pipeline-exec-{name}"))
    result = run_captured(spec, stream=True)
    if result.returncode != 0:
        raise CommandFailed(_exit_message(f"`{shlex.join(command)}`", result.returncode, result)
                            + f" (in {ref})")
    return ContainerRun(name, ref, command, 0)


# -- sh / root_sh -----------------------------------------------------------------------------

def shell(settings: Settings, engine: Engine, name: str, *, root: bool = False) -> ContainerRun:
    """An interactive shell (bash if the image has it, else sh) as the image's user, or as root.

    Without a terminal the shell reads its commands from stdin.

    Raises:
        ImageNotFound: the image is not built.
        CommandFailed: the shell exited non-zero (the last command failed, or docker could not start it).
    """
    dep, ref = mission_image(settings, engine, name)
    spec = container_spec(settings, dep, ref, entrypoint=SHELL_ENTRYPOINT, command=("-c", SHELL_SCRIPT),
                          user="0" if root else None, name=unique_name(f"pipeline-sh-{name}"))
    log.info("shell in %s as %s (exit or Ctrl-D leaves; the container is removed)", ref, "root" if root else "its user")
    code = run_attached(spec)
    if code != 0:
        raise CommandFailed(_exit_message("the shell", code) + f" (in {ref})")
    return ContainerRun(name, ref, spec.command, 0)


# -- dev --------------------------------------------------------------------------------------

def common_scripts(settings: Settings) -> Path | None:
    """The common scripts folder: the chain layer `common`'s context, its scripts/ when present."""
    for layer in settings.chain:
        if layer.name == COMMON_LAYER:
            scripts = layer.context / "scripts"
            return scripts if scripts.is_dir() else layer.context
    return None


def dev_mounts(settings: Settings, dep: Deployment) -> tuple[Mount, ...]:
    """environments/ and env-frozen/ of the deployment (created if missing) and the common scripts, read-write."""
    mounts = []
    for folder, target in (("environments", DEV_ENVIRONMENTS), ("env-frozen", DEV_FROZEN)):
        host = dep.image_dir / folder  # the build context (context:), where the trailer reads them
        host.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(host.resolve(), target))
    scripts = common_scripts(settings)
    if scripts is not None:
        mounts.append(Mount(scripts.resolve(), DEV_COMMON_SCRIPTS))
    return tuple(mounts)


def dev_shell(settings: Settings, engine: Engine, name: str, user: str | None = None) -> ContainerRun:
    """An interactive shell with the deployment's folders mounted read-write; the container is kept.

    Raises:
        ImageNotFound: the image is not built.
        CommandFailed: the shell exited non-zero (the container is kept all the same).
    """
    dep, ref = mission_image(settings, engine, name)
    mounts = dev_mounts(settings, dep)
    container = unique_name(f"pipeline-dev-{name}")
    spec = container_spec(settings, dep, ref, entrypoint=SHELL_ENTRYPOINT, command=("-c", SHELL_SCRIPT),
                          user=user or None, name=container, keep=True, mounts=mounts)
    log.info("dev:%s: container %s from %s, mounted read-write:", name, container, ref)
    for mount in mounts:
        log.info("  %s -> %s", mount.host, mount.target)
    if common_scripts(settings) is None:
        log.info("  (no chain layer named %r: no common scripts mounted)", COMMON_LAYER)
    code = run_attached(spec)
    remove_hint = f"container {container} is kept; remove it with: docker rm -f {container}"
    if code != 0:
        raise CommandFailed(_exit_message("the shell", code) + f"; {remove_hint}")
    log.info("dev:%s: %s", name, remove_hint)
    return ContainerRun(name, ref, spec.command, 0, container)


# -- run_lab ----------------------------------------------------------------------------------

def lab_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host  # nosec B104 - only shown
    return f"http://{shown}:{port}/lab"


def run_lab(settings: Settings, engine: Engine, name: str, host: str = "127.0.0.1", port: int = LAB_PORT) -> LabRun:
    """JupyterLab from the image's own CMD, published on HOST:PORT, until it exits or Ctrl-C.

    The container is removed either way; Ctrl-C (or SIGTERM) is a normal end.

    Raises:
        PipelineError: the port is not a TCP port number.
        ImageNotFound: the image is not built.
        CommandFailed: the container exited non-zero (port taken, no jupyter in the image, ...).
    """
    if not isinstance(port, int) or not 0 < port < 65536:
        raise PipelineError(f"--port {port!r} is not a TCP port number (1-65535)")
    dep, ref = mission_image(settings, engine, name)
    url = lab_url(host, port)
    spec = container_spec(settings, dep, ref, ports=((f"{host}:{port}" if host else str(port), LAB_PORT),),
                          name=unique_name(f"pipeline-lab-{name}"))
    log.info("run_lab:%s: JupyterLab from %s at %s", name, ref, url)
    log.info("  the login token is in the log lines below (…/lab?token=…, inside the container on port %d;"
             " use it with the URL above); Ctrl-C stops it and removes the container", LAB_PORT)
    try:
        result = run_captured(spec, stream=True)
    except KeyboardInterrupt:
        log.info("run_lab:%s: stopped; container removed", name)
        return LabRun(name, ref, url, 0, True)
    if result.returncode not in (0, 130, 143):  # exited by itself, or after SIGINT/SIGTERM
        raise CommandFailed(_exit_message(f"JupyterLab in {ref}", result.returncode, result))
    return LabRun(name, ref, url, result.returncode, False)

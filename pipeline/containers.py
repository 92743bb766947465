"""Containers from the pipeline's images, run through the docker CLI.

The CLI (not the SDK) runs them so that the extra flags users configure
(``run.args`` in pipeline.yaml / deployment.yaml and PIPELINE_RUN_ARGS, like
the old IMAGE_RUN_PARS) are plain ``docker run`` flags, and so that
interactive shells get a real TTY.  Every container gets a name and the
``pipeline.namespace`` label, and is removed on success, failure, timeout and
Ctrl-C unless it is meant to be kept.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import CommandFailed, PipelineError
from pipeline.run import CommandResult, run

log = logging.getLogger(__name__)

RUN_ARGS_ENV = "PIPELINE_RUN_ARGS"


@dataclass(frozen=True)
class Mount:
    host: Path
    target: str
    read_only: bool = False

    def flag(self) -> str:
        return f"type=bind,source={self.host},target={self.target}" + (",readonly" if self.read_only else "")


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    command: tuple[str, ...] = ()
    user: str | None = None
    name: str | None = None
    keep: bool = False  # no --rm, and not removed afterwards
    mounts: tuple[Mount, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()  # ("127.0.0.1:8888", 8888)
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    entrypoint: str | None = None
    extra_args: tuple[str, ...] = ()  # configured run.args
    labels: Mapping[str, str] = field(default_factory=dict)


def docker_cli() -> str:
    """The docker CLI for runs: PIPELINE_DOCKER_CLI, else `docker` on PATH, else Debian's.

    Raises:
        PipelineError: no docker CLI is installed.
    """
    for candidate in (os.environ.get("PIPELINE_DOCKER_CLI"), shutil.which("docker"), "/usr/bin/docker"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise PipelineError("no docker CLI found; install Debian's docker.io (scripts/setup does) or set PIPELINE_DOCKER_CLI")


def env_run_args(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Extra docker run flags from PIPELINE_RUN_ARGS (shell-quoted words).

    Raises:
        PipelineError: the variable is not valid shell quoting.
    """
    text = environ.get(RUN_ARGS_ENV, "")
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise PipelineError(f"{RUN_ARGS_ENV}={text!r}: {exc}; quote it like a shell command line") from None


def run_argv(spec: ContainerSpec, *, interactive: bool = False, tty: bool = False) -> list[str]:
    argv = [docker_cli(), "run"]
    if not spec.keep:
        argv.append("--rm")
    if interactive:
        argv.append("-i")
    if tty:
        argv.append("-t")
    if spec.name:
        argv += ["--name", spec.name]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    if spec.user is not None:
        argv += ["--user", spec.user]
    if spec.workdir:
        argv += ["--workdir", spec.workdir]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    for mount in spec.mounts:
        argv += ["--mount", mount.flag()]
    for host, port in spec.ports:
        argv += ["--publish", f"{host}:{port}"]
    for key, value in spec.env.items():
        argv += ["--env", f"{key}={value}"]
    argv += [*spec.extra_args, *env_run_args(), spec.image, *spec.command]
    return argv


def unique_name(prefix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in prefix)
    return f"{safe}-{os.urandom(4).hex()}"  # (not uuid: importing it costs a no-op 2 ms)


def run_captured(spec: ContainerSpec, *, timeout: float | None = None, stream: bool = True) -> CommandResult:
    """Run a non-interactive container, output streamed live (and kept); returns its result.

    The container is removed afterwards in every case unless ``spec.keep``.

    Raises:
        CommandFailed: on a timeout, or when docker itself cannot start the container.
    """
    name = spec.name or unique_name("pipeline")
    named = ContainerSpec(**{**spec.__dict__, "name": name})
    # On Ctrl-C, remove the container first: its PID 1 may ignore the signal docker forwards.
    stop = None if spec.keep else (lambda: remove(name))
    try:
        return run(run_argv(named), stream=stream, check=False, timeout=timeout, on_interrupt=stop)
    finally:
        if not spec.keep:
            remove(name)


def run_attached(spec: ContainerSpec) -> int:
    """Run a container attached to this terminal (a TTY when stdin is one); returns its exit code."""
    name = spec.name or unique_name("pipeline")
    named = ContainerSpec(**{**spec.__dict__, "name": name})
    argv = run_argv(named, interactive=True, tty=sys.stdin.isatty())
    log.debug("$ %s", shlex.join(argv))
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise CommandFailed(f"{argv[0]}: command not found") from None
    finally:
        if not spec.keep:
            remove(name)


def remove(name: str) -> None:
    """Force-remove a container by name; quiet when it is already gone."""
    subprocess.run([docker_cli(), "rm", "-f", name], capture_output=True, check=False)


def docker_exit_problem(result: CommandResult) -> str | None:
    """docker run's own failures (125: daemon error, 126: not executable, 127: not found), in words."""
    last = result.tail(3).strip()
    if result.returncode == 125:
        return f"docker could not run the container: {last}"
    if result.returncode == 126:
        return f"the command is not executable: {last}"
    if result.returncode == 127:
        return f"the command was not found in the image: {last}"
    return None


def as_command(words: Sequence[str]) -> tuple[str, ...]:
    """Drop a leading ``--`` (doit passes it through in ``doit exec:NAME -- cmd``)."""
    words = tuple(words)
    return words[1:] if words[:1] == ("--",) else words

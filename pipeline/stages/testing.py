"""The test stage: run a deployment's test command in a fresh container from its mission image.

Each outcome is recorded in build/tests/NAME.json as (image ID, command,
passed); the stage is current while the last test of the same image with the
same command passed, so a rebuilt image is always retested and an unchanged
one never is.  A failure is recorded as such, so ``doit info`` can say so.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import containers, records
from pipeline.containers import ContainerSpec
from pipeline.errors import CommandFailed, CommandTimedOut, ConfigError
from pipeline.keys import short
from pipeline.plan import LABEL_NAMESPACE, mission_spec
from pipeline.run import CommandResult
from pipeline.settings import Deployment, Settings
from pipeline.stages.recorded import image_and_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

KIND = "tests"
# docker run's own exit codes when the command cannot be started (see containers.docker_exit_problem).
_NOT_STARTED = (126, 127)
_DOCKER_ERROR_MARKERS = ("Error response from daemon", "OCI runtime", "exec:", "executable file not found")
# runc's words for the program it could not start: `exec: "tini": executable file not found in $PATH`,
# `exec: "/opt/x": stat /opt/x: no such file or directory`, `exec: "/opt/x": permission denied`.
_EXEC_ERROR = re.compile(r'exec: "([^"]*)": (.+?)(?:: unknown)?\.?\s*$', re.MULTILINE)


@dataclass(frozen=True)
class PassResult:
    deployment: str
    ref: str
    image_id: str
    command: str
    seconds: float

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "ref": self.ref, "command": self.command, "seconds": round(self.seconds, 3)}


def _record_path(settings: Settings, dep: Deployment) -> Path:
    return records.record_path(settings.build_dir, KIND, dep.name)


def _command(dep: Deployment) -> tuple[str, ...]:
    """The test command as words (``test:`` may carry arguments, shell-quoted).

    Raises:
        ConfigError: ``test:`` is empty or not valid shell quoting.
    """
    where = display(dep.folder / "deployment.yaml")
    try:
        words = tuple(shlex.split(dep.test))
    except ValueError as exc:
        raise ConfigError(f"{where}: key 'test' {dep.test!r} is not valid shell quoting: {exc}") from None
    if not words:
        raise ConfigError(f"{where}: key 'test' is empty; set it to the test command's path in the image")
    return words


def passed_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current while the image ID and the test command match the last passing test."""
    dep = settings.deployment(name)
    found = image_and_record(settings, engine, dep, _record_path(settings, dep), "passing test")
    if isinstance(found, Freshness):
        return found
    image, last = found
    if last.get("image") != image.id:
        return Freshness(False, f"image {short(image.id)} changed since the last passing test (was {short(last.get('image'))})")
    if last.get("command") != dep.test:
        return Freshness(False, f"test command changed: {last.get('command')!r} -> {dep.test!r}")
    if last.get("passed") is not True:
        return Freshness(False, f"the last test of image {short(image.id)} failed: {last.get('error') or 'unknown error'}")
    return Freshness(True, f"{dep.test} passed in image {short(image.id)}")


def run_test(settings: Settings, engine: Engine, name: str) -> PassResult:
    """Run the deployment's test command in a fresh container (removed afterwards in every case).

    Output streams live and goes to the task log.  The outcome is recorded;
    only a pass makes the stage current.

    Raises:
        ImageNotFound: the mission image does not exist.
        ConfigError: ``test:`` is empty or badly quoted.
        CommandFailed: the test exited non-zero, was not found in the image, or docker could not run it.
        CommandTimedOut: the test ran longer than ``test_timeout``.
    """
    dep = settings.deployment(name)
    ref = mission_spec(settings, dep).ref
    command = _command(dep)
    image = engine.require(ref, f"run `doit build:{name}` first")
    path = _record_path(settings, dep)
    records.forget(path)  # an interrupted run must not leave an old pass behind
    spec = ContainerSpec(
        image=ref,
        command=command,
        name=containers.unique_name(f"{settings.namespace}-test-{name}"),
        extra_args=dep.run_args,
        labels={LABEL_NAMESPACE: settings.namespace, "pipeline.deployment": name},
    )
    log.info("test:%s: running %s in %s (%s)", name, dep.test, ref, short(image.id))
    started = time.monotonic()
    try:
        result = containers.run_captured(spec, timeout=dep.test_timeout, stream=True)
    except CommandTimedOut:
        error = (
            f"{dep.test} did not finish within {dep.test_timeout:g} s in {ref} and was stopped; "
            f"raise test_timeout in {display(dep.folder / 'deployment.yaml')} if it needs longer"
        )
        records.save(path, {"image": image.id, "command": dep.test, "ref": ref, "passed": False, "error": error})
        raise CommandTimedOut(error) from None
    seconds = time.monotonic() - started
    if result.returncode != 0:
        error = _failure(dep, ref, result)
        records.save(path, {"image": image.id, "command": dep.test, "ref": ref, "passed": False, "error": error})
        raise CommandFailed(error)
    records.save(path, {"image": image.id, "command": dep.test, "ref": ref, "passed": True})
    log.info("test:%s: %s passed in %.1f s", name, dep.test, seconds)
    return PassResult(name, ref, image.id, dep.test, seconds)


def _failure(dep: Deployment, ref: str, result: CommandResult) -> str:
    """One line: what failed, with which code, and the last output."""
    where = display(dep.folder / "deployment.yaml")
    output = result.output
    if result.returncode in _NOT_STARTED and any(m in output for m in _DOCKER_ERROR_MARKERS):
        return _not_started(dep, ref, result, where)
    if result.returncode == 125:
        return f"{containers.docker_exit_problem(result)}; check run.args in {where} and pipeline.yaml"
    return f"{dep.test} exited with {result.returncode} in {ref}; last output: {_last_lines(output)}"


def _not_started(dep: Deployment, ref: str, result: CommandResult, where: str) -> str:
    """Docker could not start a program: the test command itself, or something before it (the ENTRYPOINT).

    "not found" is said only when Docker's error names the test command.
    """
    found = _EXEC_ERROR.search(result.output)
    if found is None:
        return (f"docker could not start {dep.test} in {ref} (exit {result.returncode}): "
                f"{_last_lines(result.output, 1)}; check the image and run.args in {where}")
    program, cause = found.group(1), found.group(2).strip()
    if program == _command(dep)[0]:
        problem = "not found" if result.returncode == 127 else "not executable"
        return f"test command {dep.test} {problem} in image {ref} ({cause}); set `test:` in {where}"
    return (f"the container could not start {program!r}, which runs before the test command {dep.test} "
            f"(the image's ENTRYPOINT), in {ref}: exec: \"{program}\": {cause}; install it in the image or fix "
            "its ENTRYPOINT")


def _last_lines(output: str, count: int = 3, width: int = 300) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()][-count:]
    text = " | ".join(lines) or "(no output)"
    return text if len(text) <= width else "…" + text[-width:]

"""The one command runner: argument lists only, never a shell.

It logs the command, keeps the whole output, streams it live when asked (or
only into the task log otherwise) and shows its tail in the error on failure.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import CommandFailed, CommandTimedOut

log = logging.getLogger(__name__)

TAIL_LINES = 25


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    output: str

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


def run(
    args: Sequence[str | Path],
    *,
    stream: bool = False,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    hint: str = "",
    timeout: float | None = None,
    stdin_text: str | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> CommandResult:
    """Run ``args`` with stdout and stderr merged.

    Args:
        stream: show each output line on the console as it comes (always kept in the task log).
        check: raise on a non-zero exit.
        env: the full environment of the child (default: inherited).
        hint: appended to the error when the program is missing, e.g. the install command.
        timeout: seconds after which the command is stopped (SIGTERM, then SIGKILL) and fails.
        stdin_text: fed to the command's stdin (never logged: use it for secrets).
        on_interrupt: called on Ctrl-C / SIGTERM before the child is stopped (e.g. remove its container).

    Raises:
        CommandFailed: the program is missing, timed out (CommandTimedOut) or (with ``check``) exited non-zero.
    """
    argv = tuple(str(a) for a in args)
    level = logging.INFO if stream else logging.DEBUG
    log.log(level, "$ %s", shlex.join(argv))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise CommandFailed(f"{argv[0]}: command not found{'; ' + hint if hint else ''}") from None
    except PermissionError:
        raise CommandFailed(f"{argv[0]}: permission denied") from None
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        if on_interrupt is not None:
            on_interrupt()  # e.g. remove the container at once: its PID 1 may ignore SIGTERM
        _stop(proc)

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        if stdin_text is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin_text)
            proc.stdin.close()
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            log.log(level, "%s", line)
        returncode = proc.wait()
    except BaseException:
        # Ctrl-C / SIGTERM: do not leave the child running behind us.
        if on_interrupt is not None:
            on_interrupt()
        _stop(proc)
        raise
    finally:
        if timer:
            timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    result = CommandResult(argv, returncode, "\n".join(lines) + ("\n" if lines else ""))
    if timed_out.is_set():
        raise CommandTimedOut(f"`{shlex.join(argv)}` timed out after {timeout:g} s; last output:\n{_indent(result.tail())}")
    if check and returncode != 0:
        raise CommandFailed(
            f"`{shlex.join(argv)}` exited with {returncode}; last output:\n{_indent(result.tail())}"
        )
    return result


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    (no output)"

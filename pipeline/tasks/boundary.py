"""The one place where PipelineErrors become doit TaskFailed results."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskError, TaskFailed

from pipeline import engine_probe, runlog
from pipeline.errors import PipelineError
from pipeline.logs import task_log
from pipeline.tasks import context

log = logging.getLogger(__name__)


def with_task(name: str, message: str) -> str:
    """``NAME: message``: this boundary names the task, so a message that already starts with it is kept as is."""
    return message if message.startswith(f"{name}: ") else f"{name}: {message}"


def stage_action(task_name: Callable[..., str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a module-level action: log to build/logs/TASK.log, translate known errors.

    ``task_name(*args)`` names the task (and its log file) from the action's arguments.
    The decorated action returns the stage result's values (saved by doit) or TaskFailed.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def action(*args: Any, **kwargs: Any) -> dict[str, Any] | TaskFailed | TaskError:
            # kwargs: a task's pos_arg and params, which doit passes by name
            return run_stage(task_name(*args), lambda ctx: fn(ctx, *args, **kwargs))

        return action

    return decorate


def run_stage(name: str, call: Callable[[context.Context], Any]) -> dict[str, Any] | TaskFailed | TaskError:
    """Run ``call(ctx)`` as task ``name``: its log in build/logs/NAME.log, a PipelineError as one line.

    Returns the stage result's values (saved by doit), or TaskFailed (a refusal, exit 1) /
    TaskError (could not be done, exit 2) naming the task and its log file.
    """
    ctx = context.get()
    with task_log(ctx.settings.build_dir, name) as logfile:
        announced = runlog.announced.pop(name, None)
        if announced:
            log.debug("%s", announced)  # the reporter printed it; the log file keeps it too
        try:
            result = call(ctx)
        except PipelineError as exc:
            log.debug("%s failed: %s", name, exc)
            message = f"{with_task(name, str(exc))}\n  (full log: {logfile})"
            # "Could not be done" (e.g. a scan) is an error, exit code 2; a refusal is a failure, 1.
            return TaskError(message) if getattr(exc, "incomplete", False) else TaskFailed(message)
        finally:
            ctx.hasher.save()
            engine_probe.invalidate()  # this action may have changed images the checks looked at
    return result.values()

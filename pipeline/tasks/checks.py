"""doit up-to-date checks whose repr is the reason ``doit info`` prints.

A check calls a stage's freshness function, remembers its plain-words reason
and returns a bool, never None (doit silently skips a None).  A known error
while checking (daemon down, parent missing) makes the stage stale, so its
action runs and fails with the same clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.errors import PipelineError
from pipeline.stages.results import Freshness
from pipeline.tasks import context


class StateMeta(dict):
    """``task.meta`` as ``doit info`` should print it: ``meta       : state: REASON`` on one line.

    doit pretty-prints a plain dict, which splits a long string mid-phrase over several
    lines; pprint prints a dict subclass with its own ``__repr__`` through that repr.
    """

    def __repr__(self) -> str:
        return "; ".join(f"{key}: {value}" for key, value in self.items())


class StageCheck:
    """An uptodate item: ``fn(ctx, *args, **options) -> Freshness``.

    With ``with_options`` the task's command-line params (e.g. ``--from``/``--to``)
    are passed too, so the check judges what the action will be asked to do.
    """

    def __init__(self, what: str, fn: Callable[..., Freshness], *args: Any, with_options: bool = False) -> None:
        self.what = what
        self.fn = fn
        self.args = args
        self.with_options = with_options
        self.reason = f"{what}: not checked yet"

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        options = dict(getattr(task, "options", None) or {}) if self.with_options else {}
        try:
            fresh = self.fn(context.get(), *self.args, **options)
        except PipelineError as exc:
            self.reason = f"cannot tell whether {self.what} is current: {exc}"
            return False
        finally:
            context.get().hasher.save()
        self.reason = fresh.reason
        if task is not None:
            # `doit info` prints a task's meta after its status: this is how it shows the state of a
            # current stage too (e.g. "…; pulled from cache"), not only the reasons of a stale one.
            task.meta = StateMeta({**(task.meta or {}), "state": fresh.reason})
        return bool(fresh.current)

    def __repr__(self) -> str:
        return self.reason

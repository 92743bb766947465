"""doit up-to-date checks whose repr is the reason ``doit info`` prints.

A check calls a stage's freshness function, remembers its plain-words reason
and returns a bool, never None (doit silently skips a None).  A known error
while checking (daemon down, parent missing) makes the stage stale, so its
action runs and fails with the same clear message.

Outside a run (``doit info``) a check also looks upstream: doit hands it every
task (``UptodateCalculator``), so it walks the task_dep chain to the first
stale ancestor on each path and names its cause (``will rebuild: parent
chain:common is stale (file common.txt changed)``), and it shows when and why
the stage last ran (build/runs/, see pipeline/runlog.py).  During a run the
ancestors have already run when a check is asked, so the walk is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from doit.dependency import UptodateCalculator

from pipeline import engine_probe, runlog
from pipeline.errors import PipelineError
from pipeline.stages.results import Freshness
from pipeline.tasks import context


class StageCheck(UptodateCalculator):
    """An uptodate item: ``fn(ctx, *args, **options) -> Freshness``.

    With ``with_options`` the task's command-line params (e.g. ``--from``/``--to``)
    are passed too, so the check judges what the action will be asked to do.
    """

    def __init__(self, what: str, fn: Callable[..., Freshness], *args: Any, with_options: bool = False) -> None:
        super().__init__()
        self.what = what
        self.fn = fn
        self.args = args
        self.with_options = with_options
        self.reason = f"{what}: not checked yet"
        self.stale_reasons: tuple[str, ...] | None = None  # None: not asked yet; (): current
        self._own: Freshness | None = None  # memo while not runlog.running: an info walk asks each check once

    def own(self, task: Any) -> Freshness:
        """The stage's own freshness (its inputs against its output), ancestors aside."""
        if self._own is not None and not runlog.running:
            return self._own
        options = dict(getattr(task, "options", None) or {}) if self.with_options else {}
        try:
            fresh = self.fn(context.checks(), *self.args, **options)
        except PipelineError as exc:
            fresh = Freshness(False, f"cannot tell whether {self.what} is current: {exc}")
        finally:
            context.get().hasher.save()
        self._own = fresh
        return fresh

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        if not runlog.running:
            # No reporter drops the engine snapshot as tasks run (doit info, or another reporter):
            # each check, with its walk upstream, takes its own.
            engine_probe.invalidate()
        fresh = self.own(task)
        reasons = () if fresh.current else fresh.parts()
        if not runlog.running and task is not None and self.tasks_dict:
            upstream = stale_ancestors(task, self.tasks_dict)
            will = "will rebuild" if runlog.is_image_stage(task.name) else "will rerun"
            reasons += tuple(f"{will}: {cause}" for cause in upstream)
        self.stale_reasons = reasons
        self.reason = "; ".join(reasons) if reasons else fresh.reason
        if task is not None:
            # `doit info` prints a task's meta after its status: this is how it shows the state of a
            # current stage too (e.g. "…; pulled from cache"), and when and why it last ran.
            task.meta = _Shown({**(task.meta or {}), "state": fresh.reason})
            if not runlog.running:
                last = runlog.load(context.get().settings.build_dir, task.name)
                if last is not None:
                    task.meta["last run"] = last.describe()
        return not reasons

    def __repr__(self) -> str:
        return self.reason


class _Shown(dict):  # type: ignore[type-arg]
    """task.meta that `doit info` prints as plain lines (it pprints the dict, which would wrap and quote)."""

    def __repr__(self) -> str:
        lines = []
        for key, value in self.items():
            if key == "last run":
                lines.append(f"    {value}")  # reads "last run 2026-…: rebuilt because …"
            else:
                lines.append(f"    {key}: {value}")
        return "\n" + "\n".join(lines)


def checks_of(task: Any) -> list[StageCheck]:
    return [utd for utd, _args, _kwargs in getattr(task, "uptodate", ()) if isinstance(utd, StageCheck)]


def stale_ancestors(task: Any, tasks: dict[str, Any]) -> list[str]:
    """The first stale ancestor on each upstream path, with its own cause, nearest first.

    ``parent X is stale (…)`` for a direct dependency, ``ancestor X is stale (…)`` further up.
    """
    causes: list[str] = []
    seen: set[str] = set()

    def visit(node: Any, direct: bool) -> None:
        for name in _deps(node):
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            dep = tasks[name]
            stale = [c.own(dep) for c in checks_of(dep)]
            stale = [f for f in stale if not f.current]
            if stale:
                why = runlog.join_reasons([r for f in stale for r in f.parts()])
                causes.append(f"{'parent' if direct else 'ancestor'} {name} is stale ({why})")
            else:
                visit(dep, False)

    visit(task, True)
    return causes


def _deps(task: Any) -> Iterable[str]:
    return list(dict.fromkeys([*getattr(task, "task_dep", ()), *getattr(task, "setup_tasks", ())]))

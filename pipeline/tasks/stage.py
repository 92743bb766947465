"""One row of the stage table (pipeline/tasks/table.py) and the doit task dicts made from it.

A row says once what doit, the reporter and the graph need to know about a stage: its
name, whether it has one subtask per deployment, what it runs after, its up-to-date
check and its action, and its flags (default run, image_all, graph, run lock, quiet).
A stage with an irregular shape (one task per chain layer, the scanners, the secrets
tasks) names its own generator in ``tasks`` and keeps only the flags here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.settings import Deployment
from pipeline.tasks import context
from pipeline.tasks.boundary import run_stage
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import TaskDict, per_deployment
from pipeline.tasks.context import Context

# A stage function: "module:function", imported when first called (a doit start that does not
# run the stage does not pay for its imports), or a function already at hand.
Call = str | Callable[..., Any]
# A condition on a deployment's subtask, e.g. ``signing``: the entry applies only when it holds.
When = Callable[[Context, Deployment], bool]
# What a stage runs after: another stage's name (for a per-deployment stage, the same
# deployment's subtask of a per-deployment stage), (name, When), or fn(ctx, dep) -> task names.
After = str | tuple[str, When] | Callable[[Context, Deployment], list[str]]

# The arguments a stage function can ask for, by name (``args`` of a row).
ARGS: dict[str, Callable[[Context, str], Any]] = {
    "ctx": lambda ctx, name: ctx,
    "settings": lambda ctx, name: ctx.settings,
    "engine": lambda ctx, name: ctx.engine,
    "hasher": lambda ctx, name: ctx.hasher,
    "name": lambda ctx, name: name,
    "deployment": lambda ctx, name: ctx.settings.deployment(name),
    "mission": lambda ctx, name: ctx.mission(name),
}


def signing(ctx: Context, dep: Deployment) -> bool:
    """pipeline.yaml has sign.key: this checkout signs (attest, then verify before promote)."""
    return bool(ctx.settings.sign.key)


@dataclass(frozen=True)
class Stage:
    """A stage as doit sees it; see docs/design.md, "Adding a stage"."""

    name: str
    doc: str  # one line: the task creator's docstring in dodo.py
    run: Call | None = None  # the action; None: a task that only depends on others (image_all)
    check: Call | None = None  # -> Freshness; None: always runs (uptodate False)
    args: tuple[str, ...] = ("settings", "engine", "name")  # what run and check are called with (ARGS)
    per_deployment: bool = True  # NAME:DEPLOYMENT for each selected deployment, plus the group NAME
    after: tuple[After, ...] = ()
    file_dep: Callable[[Context, Deployment], list[str]] | None = None  # files a subtask's doit file_dep lists
    task_doc: str | Callable[[Context, Any], str] = ""  # a subtask's doc: {name} {ref} {image}
    group_doc: str = ""
    params: tuple[dict[str, Any], ...] = ()
    pos_arg: str | None = None
    check_options: bool = False  # the check also gets the params (it judges what the action will do)
    default: bool = False  # in plain `doit`
    image_all: bool | When = False  # in CI's image_all:NAME
    graph: bool = False  # drawn by `doit graph` (its check reads only local state)
    lock: bool = True  # takes the run lock (views and interactive shells do not)
    quiet: bool = False  # its stdout is data: no task lines, no summary around it
    tasks: Callable[[], TaskDict | Iterator[TaskDict]] | None = None  # an irregular stage's own generator

    # -- what doit gets ------------------------------------------------------------------------------

    def creator(self) -> Callable[[], TaskDict | Iterator[TaskDict]]:
        """dodo.py's ``task_NAME``: doit reads the docstring, then calls it for the task dicts."""
        stage = self

        def create() -> TaskDict | Iterator[TaskDict]:
            return stage.task_dicts()

        create.__name__ = create.__qualname__ = f"task_{self.name}"
        create.__doc__ = self.doc
        return create

    def task_dicts(self) -> TaskDict | Iterator[TaskDict]:
        if self.tasks is not None:
            return self.tasks()
        if not self.per_deployment:
            return self._task(context.get(), None)
        return per_deployment(self.name, self.group_doc, self._task)

    def _task(self, ctx: Context, dep: Deployment | None) -> TaskDict:
        name = dep.name if dep is not None else ""
        task: TaskDict = {"doc": self._doc(ctx, dep)}
        if self.run is None:
            task["actions"] = None
        else:
            task["actions"] = [(StageAction(self.name), [name] if dep is not None else [])]
        deps = self.dependencies(ctx, dep)
        if deps:
            task["task_dep"] = deps
        if self.file_dep is not None and dep is not None:
            task["file_dep"] = self.file_dep(ctx, dep)
        if self.params:
            task["params"] = list(self.params)
        if self.pos_arg:
            task["pos_arg"] = self.pos_arg
        if self.run is not None:
            full = f"{self.name}:{name}" if dep is not None else self.name
            check_args = (name,) if dep is not None else ()
            task["uptodate"] = ([StageCheck(full, StageCheckFn(self.name), *check_args, with_options=self.check_options)]
                                if self.check is not None else [False])
        if dep is None:
            task["verbosity"] = 2
        return task

    def _doc(self, ctx: Context, dep: Deployment | None) -> str:
        if callable(self.task_doc):
            return self.task_doc(ctx, dep)
        if dep is None:
            return self.task_doc
        return self.task_doc.format(name=dep.name, ref=dep.image_ref(ctx.settings.environment),
                                    image=ctx.mission(dep.name).ref)

    def dependencies(self, ctx: Context, dep: Deployment | None) -> list[str]:
        """The task names this stage's (sub)task runs after."""
        out: list[str] = []
        for item in self.after:
            if callable(item):
                out += item(ctx, dep)  # type: ignore[arg-type]
                continue
            other, when = item if isinstance(item, tuple) else (item, None)
            if when is not None and not when(ctx, dep):  # type: ignore[arg-type]
                continue
            out.append(subtask(other, dep))
        return out

    # -- what the action and the check call --------------------------------------------------------

    def call(self, fn: Call, ctx: Context, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        target = resolve(fn)
        if isinstance(fn, str):
            name = args[0] if args else ""
            return target(*(ARGS[a](ctx, name) for a in self.args), **options)
        return target(ctx, *args, **options)


def subtask(stage: str, dep: Deployment | None) -> str:
    """``stage:NAME`` for a per-deployment stage (the table says which), else ``stage``."""
    from pipeline.tasks.table import get

    return f"{stage}:{dep.name}" if dep is not None and get(stage).per_deployment else stage


def resolve(fn: Call) -> Callable[..., Any]:
    if not isinstance(fn, str):
        return fn
    module, _, attr = fn.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


class StageAction:
    """A row's action as doit runs it: picklable (it holds only the stage's name) for ``-P process``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(self, *args: Any, **options: Any) -> Any:
        # options: the task's params and pos_arg, which doit passes by name (**options takes them all)
        from pipeline.tasks.table import get

        stage = get(self.stage)
        name = f"{stage.name}:{args[0]}" if args else stage.name
        assert stage.run is not None
        return run_stage(name, lambda ctx: stage.call(stage.run, ctx, args, options))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<action of stage {self.stage}>"


class StageCheckFn:
    """A row's check, as StageCheck calls it: ``(ctx, *args, **options) -> Freshness``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(self, ctx: Context, *args: Any, **options: Any) -> Any:
        from pipeline.tasks.table import get

        stage = get(self.stage)
        assert stage.check is not None
        return stage.call(stage.check, ctx, args, options)

    def __repr__(self) -> str:
        return f"<check of stage {self.stage}>"

"""The shape every per-deployment stage shares: a group task, then one subtask per selected deployment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pipeline.settings import Deployment
from pipeline.tasks import context
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


def per_deployment(basename: str, group_doc: str, make: Callable[[Context, Deployment], TaskDict]) -> Iterator[TaskDict]:
    """Yield ``basename`` (runs them all) and ``basename:NAME`` for each selected deployment.

    ``make`` gives each subtask's own keys (doc, actions, task_dep, uptodate, ...);
    subtasks stream their output (verbosity 2) unless ``make`` says otherwise.
    """
    ctx = context.get()
    yield {"basename": basename, "name": None, "doc": group_doc}
    for dep in ctx.settings.deployments:
        yield {"basename": basename, "name": dep.name, "verbosity": 2, **make(ctx, dep)}

"""The graph task: the selected deployments' DAG as DOT/SVG/PNG, stale stages marked.

It reads the same task dicts and up-to-date checks that doit runs, so the
picture cannot drift from the DAG.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.dot import Node, propagate, write_graph
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.context import Context
from pipeline.tasks.table import graph_stages

log = logging.getLogger(__name__)


def dag_tasks() -> Iterator[tuple[str, dict[str, Any]]]:
    """(full task name, task dict) for every stage the table puts in the graph, group entries skipped."""
    for stage in graph_stages():
        made = stage.task_dicts()
        for entry in ([made | {"name": stage.name}] if isinstance(made, dict) else made):
            name = entry.get("name")
            if not name or not entry.get("actions"):
                continue
            basename = entry.get("basename")
            yield (f"{basename}:{name}" if basename else name), entry


def evaluate(entries: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for name, entry in entries:
        checks = [c for c in entry.get("uptodate", []) if isinstance(c, StageCheck)]
        results = [(check(None, {}), repr(check)) for check in checks]
        stale = [reason for ok, reason in results if not ok]
        if not checks:
            state, reason = "unknown", "no up-to-date check"
        elif stale:
            state, reason = "stale", "; ".join(stale)
        else:
            state, reason = "current", results[0][1]
        deps = tuple(dict.fromkeys(entry.get("task_dep", [])))
        nodes[name] = Node(name, state, reason, deps)
    return propagate(nodes)


def graph_action(ctx: Context) -> Any:
    nodes = evaluate(dag_tasks())
    title = f"{ctx.settings.namespace} ({ctx.settings.environment}): " + ", ".join(
        d.name for d in ctx.settings.deployments
    )
    written = write_graph(list(nodes.values()), title, ctx.settings.build_dir / "graph")
    for node in nodes.values():
        if node.state != "current":
            log.info("%-24s %s: %s", node.name, node.state, node.reason)
    stale = sum(n.state == "stale" for n in nodes.values())
    log.info("%d stages, %d stale; wrote %s", len(nodes), stale, ", ".join(str(p) for p in written))
    return GraphResult(len(nodes), stale)


@dataclass(frozen=True)
class GraphResult:
    stages: int
    stale: int

    def values(self) -> dict[str, Any]:
        return {"stages": self.stages, "stale": self.stale}

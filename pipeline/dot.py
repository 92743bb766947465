"""Render a stage graph as Graphviz DOT (and SVG/PNG when Graphviz's `dot` is installed)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.files import write_text
from pipeline.run import run

COLOURS = {"current": "#d8f0d8", "stale": "#f7c6c6", "downstream": "#fbe3b5", "unknown": "#e0e0e0"}


@dataclass(frozen=True)
class Node:
    name: str
    state: str  # current | stale | downstream | unknown
    reason: str
    deps: tuple[str, ...]


def propagate(nodes: Mapping[str, Node]) -> dict[str, Node]:
    """Mark current nodes below a stale one as ``downstream``: the next run will reconsider them."""
    out = dict(nodes)

    def upstream_stale(name: str, seen: set[str]) -> bool:
        for dep in out[name].deps if name in out else ():
            if dep in seen or dep not in out:
                continue
            seen.add(dep)
            if out[dep].state == "stale" or upstream_stale(dep, seen):
                return True
        return False

    for name, node in nodes.items():
        if node.state == "current" and upstream_stale(name, set()):
            out[name] = Node(name, "downstream", "below a stale stage: rechecked after it reruns", node.deps)
    return out


def to_dot(nodes: Sequence[Node], title: str) -> str:
    lines = [
        "digraph pipeline {",
        f'  label="{_esc(title)}"; labelloc=t; rankdir=LR;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    for node in nodes:
        reason = node.reason if len(node.reason) <= 60 else node.reason[:57] + "..."
        label = f"{node.name}\\n{node.state}: {reason}" if node.state != "current" else f"{node.name}\\ncurrent"
        lines.append(f'  "{_esc(node.name)}" [label="{_esc(label, keep_newline=True)}", fillcolor="{COLOURS[node.state]}"];')
    for node in nodes:
        for dep in node.deps:
            lines.append(f'  "{_esc(dep)}" -> "{_esc(node.name)}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(nodes: Sequence[Node], title: str, out_dir: Path) -> list[Path]:
    """Write dag.dot, plus dag.svg and dag.png when `dot` is on PATH; returns the files written.

    Raises:
        CommandFailed: Graphviz failed to render.
    """
    dot_file = out_dir / "dag.dot"
    write_text(dot_file, to_dot(nodes, title))
    written = [dot_file]
    if shutil.which("dot"):
        for fmt in ("svg", "png"):
            target = out_dir / f"dag.{fmt}"
            run(["dot", f"-T{fmt}", str(dot_file), "-o", str(target)])
            written.append(target)
    return written


def _esc(text: str, keep_newline: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\\\\n", "\\n") if keep_newline else text

"""The import rules of docs/design.md, checked over the package's import graph with ``ast``.

The floors are read from the table in docs/design.md, so the rules written there
are the rules tested: a module imports only from its own floor or those below.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "pipeline"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, absolute names."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}
MODULES["dodo"] = imports_of(REPO / "dodo.py")


def floors() -> dict[str, int]:
    """``pipeline.NAME`` (or ``dodo``) -> floor number, from docs/design.md's floor table."""
    text = (REPO / "docs" / "design.md").read_text()
    table: dict[str, int] = {}
    for number, cell in re.findall(r"^\| (\d+) [a-z]+ \| (.+) \|$", text, re.MULTILINE):
        for name in re.findall(r"`([a-z_.]+)`", cell):
            table[name if name == "dodo" else f"pipeline.{name}"] = int(number)
    assert table, "docs/design.md has no floor table"
    return table


FLOORS = floors()


def floor_of(module: str) -> int | None:
    """The floor of the longest table entry that is ``module`` or a package holding it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        floor = FLOORS.get(".".join(parts[:end]))
        if floor is not None:
            return floor
    return None


def internal(names: set[str]) -> set[str]:
    """The pipeline modules among ``names`` (``from pipeline.x import y`` names y only when y is a module)."""
    return {n for n in names if n in MODULES and n != "pipeline"}


def test_every_module_has_a_floor() -> None:
    # (a package's __init__ that imports nothing of the pipeline, e.g. findings/ split over two floors, needs none)
    missing = sorted(m for m in MODULES if m != "pipeline" and floor_of(m) is None and internal(MODULES[m]))
    missing += [m for m in ("dodo",) if floor_of(m) is None]
    assert not missing, f"add these to the floor table in docs/design.md: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if floor_of(m) is not None))
def test_floors_never_import_upward(module: str) -> None:
    own = floor_of(module)
    assert own is not None
    upward = sorted(n for n in internal(MODULES[module]) if (floor_of(n) or 0) > own)
    assert not upward, f"{module} (floor {own}) imports from higher floors: {upward}"


def importers(top: str) -> set[str]:
    return {m for m, names in MODULES.items() if any(n == top or n.startswith(f"{top}.") for n in names)}


def test_nothing_under_stages_imports_doit() -> None:
    assert not {m for m in importers("doit") if m.startswith("pipeline.stages")}


def test_only_the_engine_imports_docker() -> None:
    assert {m for m in importers("docker") if not m.startswith("pipeline.engine.")} == set()
    assert importers("docker")  # the check sees the engine's imports at all


def test_only_registry_ecr_imports_boto3() -> None:
    assert importers("boto3") == {"pipeline.registry.ecr"}

"""What the source scanners read: the project's and the deployments' YAML and Python files,
the deployments' frozen requirements and the installed environment.

The project is doit's working directory (the parent of ``build/``); ``deployments/``
is scanned too when it lives elsewhere (PIPELINE_DEPLOYMENTS_DIR).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.hashing import FileHasher
from pipeline.settings import Settings

# Folders never scanned: tool and build state, other people's code, and the secrets checkouts.
EXCLUDED_DIRS = frozenset({
    ".venv", "build", ".git", "node_modules", "secrets", "__pycache__", ".ruff_cache", ".pytest_cache",
    ".mypy_cache", ".tox", ".nox", ".eggs", ".hg", ".svn",
})
YAML_SUFFIXES = (".yaml", ".yml")
RUFF_CONFIGS = ("ruff.toml", ".ruff.toml")


@dataclass(frozen=True)
class SourceFiles:
    yaml: tuple[Path, ...]
    python: tuple[Path, ...]  # *.py and extensionless scripts with a python shebang


def project_root(settings: Settings) -> Path:
    """doit's working directory: where build/ is."""
    return settings.build_dir.parent


def roots(settings: Settings) -> list[Path]:
    root = project_root(settings)
    found = [root]
    if not settings.deployments_dir.is_relative_to(root):
        found.append(settings.deployments_dir)
    return found


def _excluded(folder: Path, name: str) -> bool:
    return name in EXCLUDED_DIRS or name.endswith(".egg-info") or (folder / name / "pyvenv.cfg").is_file()


def walk(settings: Settings) -> Iterator[Path]:
    """Every regular file under the scanned roots, excluded folders pruned, symlinks not followed."""
    seen: set[Path] = set()
    for root in roots(settings):
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not _excluded(here, d))
            for name in sorted(files):
                path = here / name
                if path not in seen and path.is_file() and not path.is_symlink():
                    seen.add(path)
                    yield path


def is_python_script(path: Path) -> bool:
    """An extensionless file whose first line is a python shebang (``#!/usr/bin/env python3``)."""
    if path.suffix:
        return False
    try:
        with path.open("rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def discover(settings: Settings) -> SourceFiles:
    yaml_files: list[Path] = []
    python: list[Path] = []
    for path in walk(settings):
        if path.suffix in YAML_SUFFIXES:
            yaml_files.append(path)
        elif path.suffix == ".py" or is_python_script(path):
            python.append(path)
    return SourceFiles(tuple(yaml_files), tuple(python))


def requirement_files(settings: Settings) -> list[Path]:
    """Every selected deployment's env-frozen/*/requirements.txt."""
    return [p for dep in settings.deployments for p in sorted(dep.image_dir.glob("env-frozen/*/requirements.txt"))]


def audits_installed(settings: Settings) -> bool:
    """The project's own dependencies are audited when the project is a Python project (pyproject.toml)."""
    return (project_root(settings) / "pyproject.toml").is_file()


def installed_distributions() -> list[tuple[str, str]]:
    """(name, version) of every distribution installed in the pipeline's own environment, sorted."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found[name.lower()] = (name, dist.version)
    return sorted(found.values())


def ruff_config(settings: Settings) -> Path | None:
    """The project's own ruff configuration: ruff.toml, .ruff.toml or a pyproject.toml with [tool.ruff]."""
    root = project_root(settings)
    for name in RUFF_CONFIGS:
        if (root / name).is_file():
            return root / name
    return _pyproject_with(root, "[tool.ruff")


def bandit_config(settings: Settings) -> Path | None:
    """A pyproject.toml with [tool.bandit] at the project root (bandit reads it with -c)."""
    return _pyproject_with(project_root(settings), "[tool.bandit")


def _pyproject_with(root: Path, table: str) -> Path | None:
    path = root / "pyproject.toml"
    try:
        return path if table in path.read_text(encoding="utf-8") else None
    except (OSError, UnicodeDecodeError):
        return None


def digests(hasher: FileHasher, files: Iterable[Path]) -> dict[str, str]:
    """{path: sha256} of readable files (an unreadable one keys as such: the scanner reports it)."""
    out = {}
    for path in files:
        try:
            out[str(path)] = hasher.digest(path)
        except OSError as exc:
            out[str(path)] = f"unreadable: {exc.strerror}"
    return out


def tree_stamp(path: Path) -> str:
    """A cheap key of a directory tree (or file): relative names, sizes and mtimes."""
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    entries = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            item = Path(folder) / name
            try:
                st = item.stat()
            except OSError:
                continue
            entries.append([str(item.relative_to(path)), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def python_executable() -> str:
    """The interpreter whose environment holds the scanners (and is audited as the project's)."""
    return sys.executable

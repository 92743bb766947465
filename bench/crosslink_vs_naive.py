"""Crosslink's duplicate scan vs a naive sha256-every-file baseline, on one generated tree.

    .venv/bin/python bench/crosslink_vs_naive.py [--files 20000] [--groups 500]

Generates FILES files of unique sizes plus GROUPS groups of 3 identical files under a
temporary directory, then times (median of 3) crosslink's scan in dry-run mode (group by
size, hash only equal sizes) and a naive scan that hashes every file and groups by digest.
Both must find the same duplicate groups.  Target: crosslink >= 3x faster.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PROGRAM = Path(__file__).resolve().parents[1] / "deployments" / "common" / "scripts" / "crosslink"


def load_program():
    loader = importlib.machinery.SourceFileLoader("crosslink_program", str(PROGRAM))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(module)
    return module


def generate(root: Path, files: int, groups: int) -> None:
    for i in range(files):
        d = root / f"pkg{i % 200}"
        d.mkdir(exist_ok=True)
        (d / f"u{i}.py").write_bytes(os.urandom(64) + b"x" * (i * 3))  # unique sizes, 64 B .. ~60 kB
    for g in range(groups):
        data = os.urandom(100) + f"group {g}".encode() * (50 + g)
        for copy in range(3):
            d = root / f"env{copy}" / f"g{g % 50}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"dup{g}.py").write_bytes(data)


def naive(root: Path) -> int:
    by_digest: dict[str, list[str]] = defaultdict(list)
    for top, _, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as fh:
                by_digest[hashlib.sha256(fh.read()).hexdigest()].append(path)
    return sum(1 for paths in by_digest.values() if len(paths) > 1)


def crosslink_scan(program, root: Path) -> int:
    return int(program.crosslink([str(root)], dry_run=True)["groups"])


def median_time(fn, *args) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(3):
        started = time.perf_counter()
        found = fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--groups", type=int, default=500)
    args = parser.parse_args()
    program = load_program()
    with tempfile.TemporaryDirectory(prefix="bench-crosslink-") as tmp:
        root = Path(tmp)
        generate(root, args.files, args.groups)
        total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        print(f"tree: {args.files} unique files + {args.groups} groups x 3 duplicates, {total / 1e6:.1f} MB")
        naive(root)  # warm the page cache for both sides
        t_naive, g_naive = median_time(naive, root)
        t_cross, g_cross = median_time(crosslink_scan, program, root)
    assert g_naive == g_cross == args.groups, (g_naive, g_cross)
    print(f"naive (sha256 of every file): {t_naive:.3f} s  ({g_naive} groups)")
    print(f"crosslink (size first)      : {t_cross:.3f} s  ({g_cross} groups)")
    ratio = t_naive / t_cross
    print(f"crosslink is {ratio:.1f}x faster (target >= 3x): {'OK' if ratio >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()

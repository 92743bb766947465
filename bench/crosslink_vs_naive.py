"""The stream linker's duplicate detection vs hashing every file, side by side on one generated tree.

    .venv/bin/python bench/crosslink_vs_naive.py [--files 20000] [--groups 500] [--runs 3]

Generates FILES files of unique sizes (64 B .. ~60 kB) plus GROUPS groups of 3 identical
files, in three conda-like envs, as a tar (written once to a private temporary file) and
extracted to a directory.  The tar is built in two orders:

- adjacent: the 3 copies of each group follow each other;
- export:   sorted by path, as ``docker export`` walks a tree: the copies of a group lie
            about a third of the tree (~200 MB) apart, as in a real image with several envs.

Then runs, each in its own process (median of RUNS, interleaved; wall and CPU time,
peak RSS):

- copy:     Relinker with no roots: parse and copy every member, hash the stream sent,
            no detection (the floor every stream side pays);
- eager:    Relinker as squash/crosslink run it (lookback=0): every candidate hashed as
            it passes;
- lookback: Relinker(lookback=64 MiB): a first copy hashed only when a file of its size
            follows while its bytes are still among the last 64 MiB sent;
- census:   what squash/crosslink run on a local overlay2 engine: the sizes counted from
            the stat data of the extracted tree (as from the layer directories; the walk is
            part of this side's time), then Relinker(census=...): only files whose size
            recurs are hashed;
- naive:    hashing every file's content from the extracted tree (what "hashing every
            file" costs a tree walk: open, read, sha256), grouped by digest.

A stream side's detection cost is its time minus the copy's; the naive side's is all of
its time (it copies nothing).  Target: detection >= 5x cheaper than naive, judged on CPU
time (process_time), which other engineers' load on the shared cores disturbs less than
wall time (printed too).  Every side
must find the duplicates it claims; eager and naive find all of them in both orders.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import tarstream

LOOKBACK = 64 << 20


def members(files: int, groups: int) -> list[tuple[str, bytes]]:
    found = [(f"opt/conda/envs/e{i % 3}/pkgs/p{i % 200}/u{i}.py", os.urandom(64) + b"x" * (i * 3))
             for i in range(files)]  # unique sizes
    for g in range(groups):
        data = os.urandom(100) + f"group {g}".encode() * (50 + g)
        found += [(f"opt/conda/envs/e{copy}/lib/g{g % 50}/dup{g}.py", data) for copy in range(3)]
    return found


def write_tar(path: Path, items: list[tuple[str, bytes]]) -> None:
    with path.open("wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def chunks(path: Path):
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _relink(path: Path, roots: tuple[str, ...], lookback: int = 0) -> tarstream.Relinker:
    relinker = tarstream.Relinker(chunks(path), roots, lookback=lookback)
    for _ in relinker.stream():
        pass
    return relinker


def side_copy(path: Path) -> int:
    return _relink(path, ()).counts.files_linked  # no roots: nothing is a candidate


def side_eager(path: Path) -> int:
    return _relink(path, ("/",)).counts.files_linked


def side_lookback(path: Path) -> int:
    return _relink(path, ("/",), LOOKBACK).counts.files_linked


def side_census(paths: tuple[Path, Path]) -> int:
    tar, tree = paths
    sizes = tarstream.count_sizes([str(tree)], tarstream.Roots(("/",)))
    relinker = tarstream.Relinker(chunks(tar), ("/",), census=sizes)
    for _ in relinker.stream():
        pass
    return relinker.counts.files_linked


def side_naive(tree: Path) -> int:
    by_digest: dict[bytes, int] = {}
    for top, _, names in os.walk(tree):
        for name in names:
            with open(os.path.join(top, name), "rb") as fh:
                key = hashlib.sha256(fh.read()).digest()
            by_digest[key] = by_digest.get(key, 0) + 1
    return sum(n - 1 for n in by_digest.values())


SIDES = {"copy": side_copy, "eager": side_eager, "lookback": side_lookback, "census": side_census,
         "naive": side_naive}


def peak_rss() -> int:
    """VmHWM of this process (ru_maxrss would include the parent's peak, inherited across fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(side: str, path: str) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    found = SIDES[side](tuple(Path(p) for p in path.split(":")) if side == "census" else Path(path))  # type: ignore[arg-type]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss = peak_rss()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "found": found, "rss": rss}))


def run_side(side: str, path: Path | tuple[Path, Path]) -> dict:
    if isinstance(path, tuple):
        path = Path(":".join(str(p) for p in path))
    out = subprocess.run([sys.executable, __file__, "--child", side, str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1])
        return
    items = members(args.files, args.groups)
    orders = ("adjacent", "export")
    with tempfile.TemporaryDirectory(prefix="bench-crosslink-") as tmp:
        inputs: dict[str, dict[str, Path]] = {}
        for order in orders:
            tar = Path(tmp) / f"{order}.tar"
            write_tar(tar, items if order == "adjacent" else sorted(items))
            inputs[order] = {side: tar for side in SIDES}
        del items  # a child inherits its parent's peak RSS: keep this process small
        tree = Path(tmp) / "tree"
        with tarfile.open(inputs["adjacent"]["copy"]) as tar:
            tar.extractall(tree, filter="data")
        for order in orders:
            inputs[order]["naive"] = tree
            inputs[order]["census"] = (inputs[order]["copy"], tree)  # type: ignore[assignment]
        print(f"tree: {args.files} unique-size files + {args.groups} groups x 3 duplicates, "
              f"{inputs['adjacent']['copy'].stat().st_size / 1e6:.1f} MB of tar")
        results = {order: {side: [] for side in SIDES} for order in orders}
        for _ in range(args.runs):
            for order in orders:  # interleaved, so machine noise hits all sides alike
                for side in SIDES:
                    results[order][side].append(run_side(side, inputs[order][side]))
    for order, by_side in results.items():
        med = {s: statistics.median(r["seconds"] for r in rows) for s, rows in by_side.items()}
        cpu = {s: statistics.median(r["cpu"] for r in rows) for s, rows in by_side.items()}
        found = {s: rows[0]["found"] for s, rows in by_side.items()}
        assert found["eager"] == found["census"] == found["naive"] == 2 * args.groups, found
        print(f"\norder {order}:")
        for side, rows in by_side.items():
            print(f"  {side:8}: median {med[side]:.3f} s (cpu {cpu[side]:.3f} s)  duplicates found {found[side]:5}  "
                  f"peak RSS {max(r['rss'] for r in rows) / 1e6:4.0f} MB  "
                  f"runs {', '.join(format(r['seconds'], '.3f') for r in rows)}")
        for side in ("eager", "lookback", "census"):
            detect, detect_cpu = med[side] - med["copy"], cpu[side] - cpu["copy"]
            ratio = med["naive"] / detect if detect > 0 else float("inf")
            ratio_cpu = cpu["naive"] / detect_cpu if detect_cpu > 0 else float("inf")
            print(f"  {side} detection: cpu {detect_cpu:.3f} s vs naive {cpu['naive']:.3f} s = {ratio_cpu:.1f}x cheaper "
                  f"(target >= 5x: {'OK' if ratio_cpu >= 5 else 'MISSED'}); wall {detect:.3f} s vs "
                  f"{med['naive']:.3f} s = {ratio:.1f}x (noisy on shared cores); "
                  f"{found[side]} of {found['naive']} duplicates linked")


if __name__ == "__main__":
    main()

"""The stream linker's duplicate detection vs hashing every file, side by side on one generated tar.

    .venv/bin/python bench/crosslink_vs_naive.py [--files 20000] [--groups 500] [--runs 3]

Generates a tar of FILES files of unique sizes plus GROUPS groups of 3 identical files
(written once to a private temporary file), then runs, each in its own process (median
of RUNS, with the process's peak RSS):

- copy:      parse and copy every member, no detection (the floor every side pays);
- linker:    pipeline.tarstream.Relinker over the same stream (detect, link, list, hash the output);
- naive:     parse and copy, sha256 of every file, grouped by digest.

Detection cost is a side's time minus the copy's.  Target: the linker's detection >= 5x
cheaper than the naive one.  Both must find the same duplicates.
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


def generate(path: Path, files: int, groups: int) -> None:
    with path.open("wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i in range(files):
            add(f"opt/conda/pkg{i % 200}/u{i}.py", os.urandom(64) + b"x" * (i * 3))  # unique sizes, 64 B .. ~60 kB
        for g in range(groups):
            data = os.urandom(100) + f"group {g}".encode() * (50 + g)
            for copy in range(3):
                add(f"opt/conda/env{copy}/g{g % 50}/dup{g}.py", data)


def chunks(path: Path):
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def side_copy(path: Path) -> int:
    relinker = tarstream.Relinker(chunks(path), ())  # no roots: nothing is a candidate
    for _ in relinker.stream():
        pass
    return 0


def side_linker(path: Path) -> int:
    relinker = tarstream.Relinker(chunks(path), ("/",))
    for _ in relinker.stream():
        pass
    return relinker.counts.files_linked


def side_naive(path: Path) -> int:
    reader = tarstream._Reader(chunks(path))
    by_digest: dict[bytes, int] = {}
    out = bytearray()
    while (entry := tarstream.read_entry(reader)) is not None:
        out += entry.raw
        digest = hashlib.sha256()
        left = entry.size
        for piece in reader.pieces(-(-entry.size // 512) * 512):
            if left > 0:
                digest.update(piece[:left])
                left -= len(piece)
            out += piece
            if len(out) >= 1 << 20:
                hashlib.sha256(out)  # the output hash every side pays (diffID)
                out = bytearray()
        if entry.regular and entry.size:
            key = digest.digest()
            by_digest[key] = by_digest.get(key, 0) + 1
    return sum(n - 1 for n in by_digest.values())


SIDES = {"copy": side_copy, "linker": side_linker, "naive": side_naive}


def child(side: str, path: Path) -> None:
    started = time.perf_counter()
    found = SIDES[side](path)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "found": found, "rss": rss}))


def run_side(side: str, path: Path) -> dict:
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
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory(prefix="bench-crosslink-") as tmp:
        path = Path(tmp) / "tree.tar"
        generate(path, args.files, args.groups)
        print(f"tar: {args.files} unique-size files + {args.groups} groups x 3 duplicates, "
              f"{path.stat().st_size / 1e6:.1f} MB")
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for _ in range(args.runs):
            for side in SIDES:  # interleaved, so machine noise hits all sides alike
                results[side].append(run_side(side, path))
    median = {side: statistics.median(r["seconds"] for r in rows) for side, rows in results.items()}
    rss = {side: max(r["rss"] for r in rows) for side, rows in results.items()}
    found = {side: rows[0]["found"] for side, rows in results.items()}
    assert found["linker"] == found["naive"] == 2 * args.groups, found
    for side in SIDES:
        print(f"{side:6}: median {median[side]:.3f} s  peak RSS {rss[side] / 1e6:.0f} MB  "
              f"runs {', '.join(format(r['seconds'], '.3f') for r in results[side])}")
    linker, naive = median["linker"] - median["copy"], median["naive"] - median["copy"]
    ratio = naive / linker if linker > 0 else float("inf")
    print(f"detection: linker {linker:.3f} s, naive {naive:.3f} s (beyond the copy); "
          f"linker is {ratio:.1f}x cheaper (target >= 5x): {'OK' if ratio >= 5 else 'MISSED'}")
    print(f"whole pass: linker {median['linker'] / median['naive']:.2f}x the naive pass's time")


if __name__ == "__main__":
    main()

"""The pipeline's streamed export+import vs `docker export C | docker import -`, side by side.

    .venv/bin/python bench/squash_vs_pipe.py [--image jhub-demo/notebook:latest] [--runs 3]

Both sides import the file system of the same (created, never started) container; the
median of RUNS is printed for each, with the ratio (target <= 1.2x).  It also checks that
the pipeline's side wrote no temporary file: a private TMPDIR and build/
must not gain a new file of 1 MB or more (the machine is shared, so smaller ones are ignored).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.containers import docker_cli
from pipeline.engine import Engine

LABEL = {"pipeline.namespace": "bench-squash"}


def files_under(path: Path, min_size: int = 1 << 20) -> set[str]:
    """Regular files of at least ``min_size`` bytes (a spooled export would be hundreds of MB)."""
    found = set()
    for top, _, names in os.walk(path):
        for name in names:
            try:
                if os.lstat(os.path.join(top, name)).st_size >= min_size:
                    found.add(os.path.join(top, name))
            except OSError:
                continue
    return found


def pipeline_side(engine: Engine, container: str) -> str:
    return engine.import_tar(engine.export_stream(container), ["LABEL pipeline.namespace=bench-squash"])


def pipe_side(container: str) -> str:
    cli = docker_cli()
    export = subprocess.Popen([cli, "export", container], stdout=subprocess.PIPE)
    out = subprocess.run([cli, "import", "--change", "LABEL pipeline.namespace=bench-squash", "-", ],
                         stdin=export.stdout, capture_output=True, text=True, check=True)
    assert export.stdout is not None
    export.stdout.close()
    if export.wait() != 0:
        raise SystemExit("docker export failed")
    return out.stdout.strip()


def timed(fn, *args) -> tuple[float, str]:
    started = time.perf_counter()
    image = fn(*args)
    return time.perf_counter() - started, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="jhub-demo/notebook:latest")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = Engine()
    info = engine.image(args.image)
    if info is None:
        raise SystemExit(f"{args.image} is absent; build the demo first (scripts/demo) or pass --image")
    print(f"image {args.image}: {info.size / 1e6:.0f} MB")
    container = engine.create_container(info.id, command=["true"], entrypoint=[], labels=LABEL, network="none")
    private_tmp = Path(tempfile.mkdtemp(prefix="bench-squash-tmp-"))
    tempfile.tempdir = str(private_tmp)  # anything the pipeline side spools would land here
    os.environ["TMPDIR"] = str(private_tmp)
    watched = [private_tmp, Path("build").resolve()]
    made: list[str] = []
    ours, theirs = [], []
    no_temp = True
    try:
        for _ in range(args.runs):
            before = {p: files_under(p) for p in watched}
            seconds, image = timed(pipeline_side, engine, container)
            made.append(image)
            ours.append(seconds)
            for p in watched:
                new = files_under(p) - before[p]
                if new:
                    no_temp = False
                    print(f"  new files under {p}: {sorted(new)[:5]}")
            seconds, image = timed(pipe_side, container)
            made.append(image)
            theirs.append(seconds)
    finally:
        engine.remove_container(container)
        for image in made:
            engine.remove_image(image)
        private_tmp.rmdir()
    mine, pipe = statistics.median(ours), statistics.median(theirs)
    print(f"pipeline export+import (streamed): median {mine:.2f} s  runs {', '.join(f'{s:.2f}' for s in ours)}")
    print(f"docker export | docker import -  : median {pipe:.2f} s  runs {', '.join(f'{s:.2f}' for s in theirs)}")
    ratio = mine / pipe
    print(f"ratio {ratio:.2f}x (target <= 1.2x): {'OK' if ratio <= 1.2 else 'MISSED'}")
    print(f"temporary files written by the pipeline side: {'none' if no_temp else 'SOME (see above)'}")


if __name__ == "__main__":
    main()

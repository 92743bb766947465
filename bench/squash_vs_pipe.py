"""The whole squash pass vs `docker export C | docker import -`, side by side.

    .venv/bin/python bench/squash_vs_pipe.py [--runs 3] [--large] [--image REF]

The image is generated and imported (streamed, no file) unless --image names one:
by default about 150 MB (10,000 files of unique sizes, 1,000 groups of 3 duplicates);
with --large about 1.3 GB (20,000 small and 250 large files of unique sizes, 3,000
groups of 3 duplicates and 20 pairs of 4 MB duplicates).  Both sides import the file
system of the same created (never started) container.  The pipeline side is
pipeline.stages.relink.relink_image, what squash:NAME runs: export through the Engine
API, link duplicates, import, check the layer's diffID against the sha256 sent.  It runs
in a child process so that its peak RSS can be reported.  The median of RUNS is
printed for each side, with the ratio (target <= 1.1x), the pipeline side's CPU time
and peak RSS, and a check that it wrote no file of 1 MB or more to a private TMPDIR or
build/.  The container is exported once before the runs (so that the page cache is warm
for both sides), and the sides take turns going first.  Every image made is removed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.containers import docker_cli
from pipeline.engine import Engine

NS = "bench-squash"
LABEL = {"pipeline.namespace": NS}


class _Pipe(io.RawIOBase):
    """A write-only sink that hands the bytes written to a generator, for tarfile's stream mode."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending.append(bytes(data))
        return len(data)


def image_tar(large: bool) -> Iterator[bytes]:
    """busybox plus generated files, as tar chunks."""
    rnd = random.Random(18)
    small, big, groups, big_pairs = (20000, 250, 3000, 20) if large else (10000, 0, 1000, 0)
    sink = _Pipe()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> Iterator[bytes]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            yield from sink.pending
            sink.pending.clear()

        yield from add("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        for i in range(small):
            yield from add(f"opt/conda/pkgs/p{i % 300}/u{i}.py", rnd.randbytes(64 + i * 3))
        for i in range(big):
            yield from add(f"opt/conda/lib/big{i}.so", rnd.randbytes(3_000_000 + i * 4099))
        for g in range(groups):
            data = rnd.randbytes(70_000 + g * 5)
            for copy in range(3):
                yield from add(f"opt/conda/envs/e{copy}/lib/g{g % 60}/dup{g}.py", data)
        for g in range(big_pairs):
            data = rnd.randbytes(4_000_000 + g * 7)
            for copy in range(2):
                yield from add(f"opt/conda/envs/e{copy}/lib/libdup{g}.so", data)
    yield from sink.pending


def files_under(path: Path, min_size: int = 1 << 20) -> set[str]:
    found = set()
    for top, _, names in os.walk(path):
        for name in names:
            try:
                if os.lstat(os.path.join(top, name)).st_size >= min_size:
                    found.add(os.path.join(top, name))
            except OSError:
                continue
    return found


def pipe_side(container: str) -> str:
    cli = docker_cli()
    export = subprocess.Popen([cli, "export", container], stdout=subprocess.PIPE)
    out = subprocess.run([cli, "import", "--change", f"LABEL pipeline.namespace={NS}", "-"],
                         stdin=export.stdout, capture_output=True, text=True, check=True)
    assert export.stdout is not None
    export.stdout.close()
    if export.wait() != 0:
        raise SystemExit("docker export failed")
    return out.stdout.strip()


def child(image: str) -> None:
    """The pipeline side in its own process: prints seconds, image, counts and peak RSS as JSON."""
    from pipeline.stages.relink import relink_image

    engine = Engine()
    source = engine.require(image, "it vanished")
    started = time.perf_counter()
    made = relink_image(SimpleNamespace(namespace=NS), engine, "bench", source, ("/opt/conda",), LABEL)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    c = made.counts
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "image": made.image_id, "linked": c.files_linked, "saved": c.bytes_saved,
                      "hashed": c.hashed_bytes, "spooled": c.spooled, "reread": c.reread, "sent": c.bytes_sent,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def pipeline_side(image: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", image], check=False, capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise SystemExit(f"pipeline side failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="")
    parser.add_argument("--large", action="store_true", help="generate a ~1.3 GB image (slow; not run by default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    engine = Engine()
    made: list[str] = []
    if args.image:
        image = args.image
    else:
        print(f"generating and importing the {'large ' if args.large else ''}image ...", flush=True)
        image = engine.import_tar(image_tar(args.large), [f"LABEL pipeline.namespace={NS}"])
        made.append(image)
    info = engine.require(image, "build or pull it first, or leave out --image")
    print(f"image {image[:19]}: {info.size / 1e6:.0f} MB")
    container = engine.create_container(info.id, command=["true"], entrypoint=[], labels=LABEL, network="none")
    private_tmp = Path(tempfile.mkdtemp(prefix="bench-squash-tmp-"))
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    watched = [private_tmp, Path("build").resolve()]
    ours: list[dict] = []
    theirs: list[float] = []
    no_temp = True
    try:
        for _ in engine.export_stream(container):  # warm the page cache, so that no side pays it alone
            pass
        for run in range(args.runs):
            for side in ("pipeline", "pipe") if run % 2 == 0 else ("pipe", "pipeline"):  # alternate who goes first
                if side == "pipe":
                    started = time.perf_counter()
                    made.append(pipe_side(container))
                    theirs.append(time.perf_counter() - started)
                    continue
                before = {p: files_under(p) for p in watched}
                result = pipeline_side(info.id, env)
                made.append(result["image"])
                ours.append(result)
                for p in watched:
                    new = files_under(p) - before[p]
                    if new:
                        no_temp = False
                        print(f"  new files under {p}: {sorted(new)[:5]}")
    finally:
        engine.remove_container(container)
        for ref in reversed(made):
            engine.remove_image(ref)
        private_tmp.rmdir()
    mine, pipe = statistics.median(r["seconds"] for r in ours), statistics.median(theirs)
    last = ours[-1]
    print(f"squash pass (export, link, import, verify): median {mine:.2f} s  "
          f"runs {', '.join(format(r['seconds'], '.2f') for r in ours)}")
    print(f"docker export | docker import -           : median {pipe:.2f} s  "
          f"runs {', '.join(format(s, '.2f') for s in theirs)}")
    print(f"linked {last['linked']} files, {last['saved'] / 1e6:.1f} MB saved; hashed {last['hashed'] / 1e6:.0f} MB, "
          f"spooled {last['spooled']}, reread {last['reread']}; sent {last['sent'] / 1e6:.0f} MB")
    print(f"pipeline side: peak RSS {max(r['rss'] for r in ours) / 1e6:.0f} MB, "
          f"CPU {statistics.median(r['cpu'] for r in ours):.2f} s (median; includes starting python)")
    ratio = mine / pipe
    print(f"ratio {ratio:.2f}x (target <= 1.1x): {'OK' if ratio <= 1.1 else 'MISSED'}")
    print(f"temporary files written by the pipeline side: {'none' if no_temp else 'SOME (see above)'}")


if __name__ == "__main__":
    main()

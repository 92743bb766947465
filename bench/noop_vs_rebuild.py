#!/usr/bin/env python3
"""No-op `doit` on the demo versus the old way (docker build of every layer in order, warm cache).

Run from the repository root after the demo has been built once (it builds it first if needed):

    .venv/bin/python bench/noop_vs_rebuild.py [--runs 7]

Prints each side's median wall time, the ratio, and the no-op's peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(ROOT), "deployment=demo"]
CLI = os.environ.get("PIPELINE_DOCKER_CLI", "/usr/bin/docker")
# doit as a user runs it: with Python's bytecode cache (a CI shell may set PYTHONDONTWRITEBYTECODE,
# which would make every edited module compile on every run and time the compiler).
DOIT_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, this process alone) of one command; exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or DOIT_ENV)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv[:4])}… failed ({proc.returncode}):\n{output.decode()[-3000:]}")
    return seconds, usage.ru_maxrss


def old_way_commands() -> list[list[str]]:
    """What image-base + image-build did: docker build of each layer in order, from its rendered Dockerfile."""
    sys.path.insert(0, str(ROOT))
    from pipeline import config
    from pipeline.plan import chain_specs, mission_spec
    from pipeline.stages.image_check import rendered_text

    os.chdir(ROOT)
    settings = config.load(ROOT / "deployments", {"deployment": "demo"})
    specs = [*chain_specs(settings), mission_spec(settings, settings.deployment("demo"))]
    commands = []
    parent = settings.root_ref
    out = ROOT / "build" / "bench-old"
    out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        tag = f"bench-old/{spec.task.replace(':', '-')}:latest"
        dockerfile = out / f"{spec.task.replace(':', '-')}.Dockerfile"
        dockerfile.write_text(rendered_text(settings, spec)[0])
        argv = [CLI, "build", "-q", "-f", str(dockerfile), "-t", tag]
        for key, value in {**spec.buildargs, "BASE_IMAGE": parent}.items():
            argv += ["--build-arg", f"{key}={value}"]
        commands.append([*argv, str(spec.context)])
        parent = tag
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    print("bench: bringing the demo up to date first (may build it)…", flush=True)
    subprocess.run(DOIT, check=True, stdout=subprocess.DEVNULL)
    commands = old_way_commands()
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    for argv in commands:  # warm docker's layer cache for the old way's tags
        timed(argv, env)

    noop, old, rss = [], [], 0
    for _ in range(args.runs):  # interleaved, so machine noise hits both sides alike
        seconds, peak = timed(DOIT)
        noop.append(seconds)
        rss = max(rss, peak)
        start = time.perf_counter()
        for argv in commands:
            timed(argv, env)
        old.append(time.perf_counter() - start)
    subprocess.run([CLI, "rmi", *(argv[argv.index("-t") + 1] for argv in commands)], capture_output=True, check=False)

    noop_med, old_med = statistics.median(noop), statistics.median(old)
    print(f"runs: {args.runs} each, interleaved")
    print(f"no-op doit (demo, {len(commands)} image stages):  median {noop_med:.3f} s  (min {min(noop):.3f}, max {max(noop):.3f})")
    print(f"old way (docker build x{len(commands)}, warm cache): median {old_med:.3f} s  (min {min(old):.3f}, max {max(old):.3f})")
    ratio = noop_med / old_med
    print(f"no-op/old way: {ratio:.2f}x (goal <= 0.5x: {'met' if ratio <= 0.5 else 'MISSED'}); "
          f"no-op goal <= 0.25 s: {'met' if noop_med <= 0.25 else 'MISSED'}")
    print(f"no-op peak memory (max RSS of the doit process): {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

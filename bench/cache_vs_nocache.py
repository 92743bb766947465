#!/usr/bin/env python3
"""A fresh CI runner's `doit image_all` over the fixture deployments: stage cache on versus off.

One run, side by side: a registry and a second, empty Docker engine are started
here; engine A (the usual one) builds the fixture once with the cache on, which
fills the cache. Then, alternately, a fresh runner (engine B wiped, a new
checkout with no .doit.db) runs `doit image_all` with the cache off and with it
on. Prints the median wall times, how many images each built, and the ratio.

    .venv/bin/python bench/cache_vs_nocache.py [--runs 3]

Needs root (the second dockerd), docker-registry and the test fixtures' helpers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import docker
from engines import SecondEngine, unmount_below
from helpers import (
    Project,
    build_busybox_rootfs,
    cleanup_namespace,
    make_project,
    run_doit,
    summary_rows,
    use_generic_registry,
)
from services import LocalRegistry, registry_binary


def built_count(output: str) -> tuple[int, int]:
    rows = summary_rows(output, raw=True)
    return sum(r == "built" for r in rows.values()), sum(r == "pulled" for r in rows.values())


def fresh_run(project: Project, engine: SecondEngine, workdir: Path, cache: bool) -> tuple[float, int, int]:
    runner = workdir / f"runner-{uuid.uuid4().hex[:6]}"
    shutil.copytree(project.deployments, runner / "deployments")
    fresh = Project(runner, project.ns, project.rootfs)
    if not cache:
        fresh.update_yaml("pipeline.yaml", lambda c: c.pop("cache", None))
    with engine.client() as client:
        cleanup_namespace(client, project.ns)
    start = time.perf_counter()
    result = run_doit(runner, "image_all", env={"DOCKER_HOST": engine.host}, timeout=900)
    seconds = time.perf_counter() - start
    if result.rc != 0:
        sys.exit(f"bench: image_all failed on the fresh runner (cache {'on' if cache else 'off'}):\n{result.output[-3000:]}")
    built, pulled = built_count(result.output)
    return seconds, built, pulled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-bench-cache-"))
    ns = "bench" + uuid.uuid4().hex[:6]
    registry = LocalRegistry(workdir / "registry", binary=registry_binary()).start()
    engine_dir = Path(tempfile.mkdtemp(prefix="pipeline-eb-", dir="/var/tmp"))  # nosec B108 - a dockerd data root
    engine = SecondEngine(engine_dir).start()
    client = docker.from_env()
    try:
        project = make_project(workdir, ns, build_busybox_rootfs(workdir))
        use_generic_registry(project, registry.host)
        project.update_yaml("pipeline.yaml", lambda c: c.update(cache={"repo": f"{ns}-cache"}))
        first = run_doit(project.root, "image_all", timeout=900)
        if first.rc != 0:
            sys.exit(f"bench: priming image_all failed:\n{first.output[-3000:]}")
        off, on = [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both sides alike
            off.append(fresh_run(project, engine, workdir, cache=False))
            on.append(fresh_run(project, engine, workdir, cache=True))
        off_med = statistics.median(s for s, _, _ in off)
        on_med = statistics.median(s for s, _, _ in on)
        print(f"fresh-runner doit image_all, fixture deployments alpha+beta, {args.runs} runs each, interleaved")
        print(f"cache off: median {off_med:.2f} s, images built {off[0][1]}, pulled {off[0][2]}")
        print(f"cache on:  median {on_med:.2f} s, images built {on[0][1]}, pulled {on[0][2]}")
        print(f"ratio off/on: {off_med / on_med:.2f}x")
    finally:
        with engine.client() as client_b:
            cleanup_namespace(client_b, ns)
        engine.stop()
        unmount_below(engine_dir)
        shutil.rmtree(engine_dir, ignore_errors=True)
        registry.stop()
        cleanup_namespace(client, ns)
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

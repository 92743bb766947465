#!/usr/bin/env python3
"""No-op `doit` against the old way at 2, 10 and 30 generated deployments, in one run.

The old way is what image-base + image-build did: `docker build` of every layer in
order (the shared chain once, then one mission image per deployment), with a warm
layer cache.  Run from the repository root:

    .venv/bin/python bench/noop_scale.py [--runs 7] [--scales 2,10,30] [--keep]

It writes a throw-away project (busybox root, two chain layers, N small
deployments) under a temporary folder, builds it once (about a minute the first
time), then times both sides interleaved, so machine noise hits them alike.
Prints per scale the medians, the ratio no-op/old way, the cost of each extra
deployment (slope between the smallest and largest scale) and the no-op's peak
RSS.  Images of the bench's namespace and its old-way tags are removed at the end
unless --keep is given (then a second bench run skips the first build).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import build_busybox_rootfs  # the test suite's smallest root that runs

ROOT = Path(__file__).resolve().parent.parent
CLI = os.environ.get("PIPELINE_DOCKER_CLI", "/usr/bin/docker")
NAMESPACE = "jhub-bench-scale"
REGISTRY = "127.0.0.1:5000"
# doit as a user runs it: with Python's bytecode cache (a CI shell may set PYTHONDONTWRITEBYTECODE,
# which would make every edited module compile on every run and time the compiler).
DOIT_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
FAKE_PEM = ("-----BEGIN CERTIFICATE-----\n"
            "MIIBszCCAVmgAwIBAgIUbench0000000000000000000000000wCgYIKoZIzj0EAwIw\n"
            "-----END CERTIFICATE-----\n")


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, this process alone) of one command; exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or DOIT_ENV, cwd=cwd)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(map(str, argv[:6]))}… failed ({code}):\n{output.decode()[-3000:]}")
    return seconds, usage.ru_maxrss


def write_project(project: Path, count: int, rootfs: Path) -> list[str]:
    """deployments/ with a two-layer chain and ``count`` deployments d01…; returns their names."""
    dep_dir = project / "deployments"
    names = [f"d{i:02d}" for i in range(1, count + 1)]
    files = {
        "pipeline.yaml": (
            "environment: sandbox\nfrozen: false\nbuilder: {buildkit: false}\n"
            f"namespace: {NAMESPACE}\nroot: {{rootfs: {rootfs}}}\n"
            "certs: {source: ca/bundle.pem, target: common/tls-ca-bundle.pem}\n"
            "chain:\n"
            "  - {name: certs, dockerfile: common/Dockerfile.certs, context: common}\n"
            "  - {name: common, dockerfile: common/Dockerfile, context: common}\n"
            f"trailer: common/Dockerfile.trailer\nregistry: {{kind: generic, host: '{REGISTRY}'}}\n"
        ),
        "ca/bundle.pem": FAKE_PEM,
        "common/Dockerfile.certs": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY tls-ca-bundle.pem /etc/ssl/bundle.pem\n",
        "common/Dockerfile": ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
                              "COPY scripts/ /opt/common-scripts/\nRUN chmod +x /opt/common-scripts/hello.sh\n"),
        "common/Dockerfile.trailer": "COPY environments/ /opt/environments/\nCOPY app/ /opt/app/\n",
        "common/scripts/hello.sh": "#!/bin/sh\necho hello from common\n",
    }
    for name in names:
        files[f"{name}/deployment.yaml"] = f"repo: {NAMESPACE}-{name}\ntest: /opt/environments/test\n"
        files[f"{name}/Dockerfile.custom"] = f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {name} > /name\n"
        files[f"{name}/environments/test"] = f"#!/bin/sh\nset -e\ntest \"$(cat /name)\" = {name}\necho {name} ok\n"
        for i in range(5):  # a few context files per deployment, as a real one has
            files[f"{name}/app/file{i}.txt"] = f"{name} file {i}\n"
    for rel, text in files.items():
        path = dep_dir / rel
        if path.is_file() and path.read_text() == text:
            continue  # keep mtimes, so a kept project stays current
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.endswith("environments/test"):
            path.chmod(0o755)
    return names


def doit_argv(project: Path, names: list[str], *args: str) -> list[str]:
    return [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project),
            f"deployment={','.join(names)}", *args]


def old_way_commands(project: Path, names: list[str]) -> list[list[str]]:
    """docker build of each chain layer in order, then of each mission image, from the rendered Dockerfiles."""
    sys.path.insert(0, str(ROOT))
    from pipeline import config
    from pipeline.plan import chain_specs, mission_spec

    here = Path.cwd()
    os.chdir(project)
    try:
        settings = config.load(project / "deployments", {"deployment": ",".join(names)})
    finally:
        os.chdir(here)
    commands, parent = [], settings.root_ref
    for spec in chain_specs(settings):
        tag = f"bench-old-scale/{spec.task.replace(':', '-')}:latest"
        commands.append(_build(spec, parent, tag))
        parent = tag
    for dep in settings.deployments:
        spec = mission_spec(settings, dep)
        commands.append(_build(spec, parent, f"bench-old-scale/{spec.task.replace(':', '-')}:latest"))
    return commands


def _build(spec: object, parent: str, tag: str) -> list[str]:
    argv = [CLI, "build", "-q", "-f", str(spec.rendered_path), "-t", tag,  # type: ignore[attr-defined]
            "--build-arg", f"BASE_IMAGE={parent}",
            "--build-arg", f"USE_FROZEN={spec.buildargs['USE_FROZEN']}",  # type: ignore[attr-defined]
            "--build-arg", f"FROZEN_SPECS={spec.buildargs['FROZEN_SPECS']}"]  # type: ignore[attr-defined]
    return [*argv, str(spec.context)]  # type: ignore[attr-defined]


def cleanup(commands: list[list[str]]) -> None:
    tags = sorted({argv[argv.index("-t") + 1] for argv in commands})
    subprocess.run([CLI, "rmi", *tags], capture_output=True, check=False)
    for _ in range(5):  # children first: repeat until nothing of the namespace is left
        ids = subprocess.run([CLI, "images", "-q", "--filter", f"label=pipeline.namespace={NAMESPACE}"],
                             capture_output=True, text=True, check=False).stdout.split()
        refs = subprocess.run([CLI, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                              capture_output=True, text=True, check=False).stdout.split()
        refs = [r for r in refs if r.startswith((f"{NAMESPACE}/", f"{REGISTRY}/{NAMESPACE}-"))]
        if not ids and not refs:
            return
        subprocess.run([CLI, "rmi", "-f", *refs, *sorted(set(ids))], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scales", default="2,10,30")
    parser.add_argument("--keep", action="store_true", help="keep the project and its images for the next bench run")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pipeline-bench-scale")
    args = parser.parse_args()
    scales = sorted({int(s) for s in args.scales.split(",")})

    args.dir.mkdir(parents=True, exist_ok=True)
    rootfs = args.dir / "rootfs.tar"
    if not rootfs.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            shutil.move(str(build_busybox_rootfs(Path(tmp))), rootfs)
    project = args.dir / "project"
    names = write_project(project, max(scales), rootfs)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    all_commands: list[list[str]] = []
    try:
        print(f"bench: bringing {len(names)} generated deployments up to date first (may build them)…", flush=True)
        timed(doit_argv(project, names), cwd=project)
        subjects = {}
        for scale in scales:
            subjects[scale] = (doit_argv(project, names[:scale]), old_way_commands(project, names[:scale]))
            all_commands += subjects[scale][1]
            timed(subjects[scale][0], cwd=project)  # a no-op already: any record a subset writes is in place
            for argv in subjects[scale][1]:  # warm docker's layer cache for the old way's tags
                timed(argv, env)

        noop: dict[int, list[float]] = {s: [] for s in scales}
        old: dict[int, list[float]] = {s: [] for s in scales}
        rss: dict[int, int] = {s: 0 for s in scales}
        for _ in range(args.runs):  # interleaved: every scale and side once per round
            for scale in scales:
                doit, commands = subjects[scale]
                seconds, peak = timed(doit, cwd=project)
                noop[scale].append(seconds)
                rss[scale] = max(rss[scale], peak)
                start = time.perf_counter()
                for argv in commands:
                    timed(argv, env)
                old[scale].append(time.perf_counter() - start)
    finally:
        if not args.keep:
            cleanup(all_commands or old_way_commands(project, names))
            shutil.rmtree(args.dir, ignore_errors=True)

    print(f"runs: {args.runs} per scale and side, interleaved")
    print(f"{'deployments':>11}  {'no-op (median)':>14}  {'old way (median)':>16}  {'no-op/old':>9}  {'no-op peak RSS':>14}")
    for scale in scales:
        n, o = statistics.median(noop[scale]), statistics.median(old[scale])
        print(f"{scale:>11}  {n:>12.3f} s  {o:>14.3f} s  {n / o:>8.2f}x  {rss[scale] / 1024:>10.0f} MiB")
    if len(scales) > 1:
        lo, hi = scales[0], scales[-1]
        per_noop = (statistics.median(noop[hi]) - statistics.median(noop[lo])) / (hi - lo)
        per_old = (statistics.median(old[hi]) - statistics.median(old[lo])) / (hi - lo)
        print(f"each extra deployment (slope {lo}->{hi}): no-op {per_noop * 1000:+.1f} ms, old way {per_old * 1000:+.1f} ms")
    print("goals: 10 deployments <= 0.2x and <= 0.4 s; each extra deployment <= 5 ms; peak RSS < 60 MiB at 30")
    for scale in scales:
        print(f"  {scale:>3}: no-op min {min(noop[scale]):.3f} max {max(noop[scale]):.3f}; "
              f"old way min {min(old[scale]):.3f} max {max(old[scale]):.3f}")


if __name__ == "__main__":
    main()

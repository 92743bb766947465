#!/usr/bin/env python3
"""Bytes uploaded per build: the whole context folder (the old way) vs the pipeline's keyed context.

Run from the repository root once the demo's parents exist (scripts/demo):

    .venv/bin/python bench/context_size.py [deployment=demo]

For every image stage of the demo it builds both tar streams in one run and
prints their sizes and the ratio: the old way is what `docker build DIR` sends
(every file of the folder after .dockerignore); the pipeline sends exactly the
entries its key lists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docker.utils import build as docker_build

from pipeline import config
from pipeline.buildctx.ignore import read_dockerignore
from pipeline.engine import Engine
from pipeline.hashing import FileHasher
from pipeline.plan import chain_specs, mission_spec
from pipeline.stages.images import plan_build


def main() -> None:
    os.chdir(ROOT)
    name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("deployment=")), "demo")
    settings = config.load(ROOT / "deployments", {"deployment": name})
    engine = Engine()
    hasher = FileHasher(None)
    specs = [*chain_specs(settings), mission_spec(settings, settings.deployment(name))]
    total_old = total_new = 0
    print(f"{'stage':<16} {'old way':>12} {'pipeline':>12}  ratio")
    for spec in specs:
        patterns = [p.text if not p.exclusion else "!" + p.text for p in read_dockerignore(spec.context)]
        with docker_build.tar(str(spec.context), exclude=patterns, gzip=False) as fh:
            old = len(fh.read())
        plan = plan_build(settings, engine, spec, hasher)
        new = sum(len(chunk) for chunk in plan.context.tar())
        total_old += old
        total_new += new
        print(f"{spec.task:<16} {old / 1024:>9.1f} KiB {new / 1024:>9.1f} KiB  {old / new:5.1f}x smaller")
    print(f"{'all stages':<16} {total_old / 1024:>9.1f} KiB {total_new / 1024:>9.1f} KiB  "
          f"{total_old / total_new:5.1f}x smaller")


if __name__ == "__main__":
    main()

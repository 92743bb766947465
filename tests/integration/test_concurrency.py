"""Concurrent runs and interrupted runs."""
from __future__ import annotations

import signal
import time

import docker
import pytest
from helpers import (
    IMAGE_STAGES,
    Project,
    assert_image_stages,
    assert_ok,
    count_ran,
    custom_dockerfile,
    image_id,
    is_image_stage,
    sleep_until,
)

pytestmark = pytest.mark.docker

SLEEP_SECONDS = 5  # length of the RUN step that gets interrupted
SIGNAL_AFTER = 2.0  # seconds after `.  build:alpha` appears


def test_concurrent_runs_build_each_stage_once(docker_client: docker.DockerClient, project: Project) -> None:
    with project.start() as first, project.start() as second:
        results = [first.wait(), second.wait()]
    for result in results:
        assert_ok(result)
    counts = count_ran(results)
    image_counts = {task: n for task, n in counts.items() if is_image_stage(task)}
    assert image_counts == dict.fromkeys(IMAGE_STAGES, 1), "\n".join(map(str, results))
    for deployment in ("alpha", "beta"):
        assert image_id(docker_client, project.mission_tag(deployment))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_build_leaves_no_tag(docker_client: docker.DockerClient, project: Project,
                                         sig: signal.Signals) -> None:
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", f"RUN sleep {SLEEP_SECONDS}"))
    with project.start("deployment=alpha") as run:
        run.wait_for_line(".  build:alpha")
        time.sleep(SIGNAL_AFTER)
        run.signal_group(sig)
        signalled = time.monotonic()
        result = run.wait(timeout=60)
    assert result.rc == 128 + sig, result  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    assert "Traceback" not in result.output and "KeyboardInterrupt" not in result.output, result
    last = result.output.rstrip().splitlines()[-1]
    assert last == f"interrupted ({sig.name}) during build:alpha; nothing was tagged; the next run redoes it", result
    # Also after the interrupted step would have finished: the daemon must not
    # complete the build and tag it behind our back.
    sleep_until(signalled + SLEEP_SECONDS + 1)
    assert image_id(docker_client, project.mission_tag("alpha")) is None, "half-finished build was tagged"

    rerun = project.run("deployment=alpha")
    assert_image_stages(rerun, {"build:alpha"})
    assert image_id(docker_client, project.mission_tag("alpha"))

"""What a person sees: the summary table, the DAG graph, and which commands skip the run lock."""

from __future__ import annotations

import fcntl

import pytest
from helpers import Project

pytestmark = pytest.mark.docker


def test_summary_table_lists_each_stage_with_result_and_size(built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo more > /more\n")
    result = built.run()
    assert result.rc == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("stage ") and "result" in line)
    rows = {line.split()[0]: line for line in lines[header + 1:] if line and not line[0].isdigit()}
    assert "built" in rows["build:alpha"]
    assert " kB" in rows["build:alpha"] or " MB" in rows["build:alpha"], rows["build:alpha"]
    assert "up to date" in rows["build:beta"] and "up to date" in rows["root"]
    assert "(+" in rows["build:alpha"] or "(-" in rows["build:alpha"], rows["build:alpha"]
    assert lines[-1].endswith("0 failed") and " ran, " in lines[-1]


def test_graph_marks_stale_and_downstream_stages(built: Project) -> None:
    built.append("common/scripts/hello.sh", "echo changed\n")
    result = built.run("graph")
    assert result.rc == 0, result.output
    dot = (built.root / "build" / "graph" / "dag.dot").read_text()
    assert '"chain:common" [label="chain:common\\nstale: file scripts/hello.sh changed"' in dot
    assert '"build:alpha" [label="build:alpha\\ndownstream' in dot
    assert '"chain:certs" [label="chain:certs\\ncurrent"' in dot
    assert '"chain:common" -> "build:alpha";' in dot
    assert (built.root / "build" / "graph" / "dag.svg").stat().st_size > 0
    # Looking is free: graph changed nothing, so the real run still has the work to do.
    assert {"chain:common"} <= built.run().image_stages


def test_views_skip_the_run_lock_but_builds_wait_for_it(built: Project) -> None:
    with (built.root / ".pipeline.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        view = built.run("graph", env={"PIPELINE_LOCK_TIMEOUT": "0"})
        assert view.rc == 0, view.output
        blocked = built.run(env={"PIPELINE_LOCK_TIMEOUT": "0"})
    assert blocked.rc != 0
    assert "another doit run in this checkout holds" in blocked.output and "Traceback" not in blocked.output
    assert not blocked.ran


def test_dockerfile_task_logs_under_its_own_name_and_info_prints_the_state_on_one_line(built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo more > /more\n")
    result = built.run("dockerfile:alpha")
    assert result.rc == 0, result.output
    assert any(line.startswith("dockerfile:alpha: wrote ") for line in result.output.splitlines()), result.output
    assert "build:alpha:" not in result.output, result.output

    info = built.info("chain:common")  # current: doit info shows how, from the task's meta
    assert info.rc == 0, info.output
    lines = info.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("meta"))
    state = [line.strip() for line in lines[start:] if line.strip().startswith("state: ")]
    assert len(state) == 1, info.output
    assert state[0].endswith(")") and "is current" in state[0], info.output  # the whole reason, on its own line

"""Nothing changed, nothing rebuilt; and every rerun says why: before (doit info), during (the stage's
first line) and after (doit info's last run, build/reports/last-run.json, GitHub's job summary)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import docker
import pytest
from helpers import (
    IMAGE_STAGES,
    REPO,
    Project,
    assert_image_stages,
    assert_nothing_ran,
    assert_ok,
    assert_reason,
    custom_dockerfile,
    image_id,
    line_with,
    run_in_image,
    summary_rows,
)

pytestmark = pytest.mark.docker

# Written like the bundled trailer: the pins folder is named by the FROZEN_SPECS build arg, and a
# floating build replaces what was copied there with its own freeze (here /pins, when the image has it).
PIN_TRAILER = (
    "ARG FROZEN_SPECS=environments\n"
    "COPY environments/ /opt/environments/\n"
    "COPY ${FROZEN_SPECS}/ /opt/env-frozen/\n"
    'RUN if [ "$FROZEN_SPECS" = environments ]; then rm -rf /opt/env-frozen/* && if [ -f /pins ]; then'
    " mkdir -p /opt/env-frozen/main && cp /pins /opt/env-frozen/main/requirements.txt; fi; fi\n"
)
PINS = "alpha/env-frozen/main/requirements.txt"
LAST_RUN = re.compile(r"last run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: (.*)$")


def _line_after(output: str, marker: str) -> str:
    lines = output.splitlines()
    index = lines.index(marker)
    return lines[index + 1] if index + 1 < len(lines) else ""


def _last_run(output: str) -> str | None:
    return next((m.group(1) for line in output.splitlines() if (m := LAST_RUN.search(line.strip()))), None)


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True)
    return proc.stdout


# -- item 1: floating builds do not depend on frozen pins -------------------------------------------

def test_pin_change_rebuilds_nothing_when_floating_and_the_mission_when_frozen(
        docker_client: docker.DockerClient, project: Project) -> None:
    project.write("common/Dockerfile.trailer", PIN_TRAILER)
    project.write(PINS, "foo==1.0\n")
    assert_image_stages(project.run(), IMAGE_STAGES)

    project.write(PINS, "foo==1.1\n")
    assert "up-to-date" in project.info("build:alpha").output
    assert_image_stages(project.run(), set())

    frozen = project.run("deployment=alpha", "frozen=1")
    assert_image_stages(frozen, {"build:alpha"})
    assert run_in_image(docker_client, project.mission_tag("alpha"), "cat /opt/env-frozen/main/requirements.txt") \
        == "foo==1.1\n"

    project.write(PINS, "foo==1.2\n")
    assert_reason(project.info("build:alpha", "deployment=alpha", "frozen=1"), "env-frozen/main/requirements.txt",
                  "changed")
    again = project.run("deployment=alpha", "frozen=1")
    assert_image_stages(again, {"build:alpha"})
    assert _line_after(again.output, ".  build:alpha") == \
        "build:alpha: rebuilding: file env-frozen/main/requirements.txt changed", again


# -- item 2 and the first test: a fresh clone, twice; the tree stays clean ----------------

def test_fresh_clone_twice_second_run_builds_and_tests_nothing_and_tree_stays_clean(
        tmp_path: Path, project: Project) -> None:
    # alpha's image writes pins that differ from the committed ones, as a floating build whose
    # packages moved on does: plain doit must report that, not write it.
    project.write("common/Dockerfile.trailer", PIN_TRAILER)
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", "RUN echo foo==2.0 > /pins"))
    project.write(PINS, "foo==1.0\n")
    shutil.copy(REPO / ".gitignore", project.root / ".gitignore")
    _git(project.root, "init", "-q")
    _git(project.root, "add", "-A")
    _git(project.root, "commit", "-qm", "fixture")
    clone = Project(root=tmp_path / "clone", ns=project.ns, rootfs=project.rootfs)
    _git(tmp_path, "clone", "-q", str(project.root), str(clone.root))

    first = clone.run()
    assert_image_stages(first, IMAGE_STAGES)
    assert "~ foo 1.0 -> 2.0" in first.output and "`doit freeze:alpha` writes them" in first.output, first
    assert _git(clone.root, "status", "--porcelain") == "", "the first run changed tracked files"

    second = clone.run()
    assert_nothing_ran(second)
    assert not {t for t in second.ran if t.startswith(("build:", "test:"))}
    assert _git(clone.root, "status", "--porcelain") == "", "the second run changed tracked files"

    # Writing the pins is one explicit command away, and then the tree has the change to commit.
    assert_ok(clone.run("freeze:alpha"))
    assert clone.read(PINS).endswith("foo==2.0\n")
    assert _git(clone.root, "status", "--porcelain").strip() == f"M deployments/{PINS}"


# -- item 3: say why at the moment of the rerun ----------------------------------------------------

def test_stage_first_line_names_the_reason_in_doit_info_words(built: Project) -> None:
    built.append("common/scripts/hello.sh", "echo hello again\n")
    result = built.run()
    assert_ok(result)
    first = _line_after(result.output, ".  chain:common")
    assert first == "chain:common: rebuilding: file scripts/hello.sh changed", result
    assert not first.startswith("Step"), result
    assert _line_after(result.output, ".  build:alpha").startswith(
        "build:alpha: rebuilding: parent changed sha256:"), result
    assert _line_after(result.output, ".  test:alpha").startswith("test:alpha: rerunning: image "), result
    rows = summary_rows(result.output, raw=True)
    assert rows["chain:common"] == "built"
    table = line_with(result.output, "chain:common", "built")
    assert table and table.rstrip().endswith("file scripts/hello.sh changed"), result
    assert "chain:common: rebuilding: file scripts/hello.sh changed" in built.build_log("chain:common").read_text()


def test_several_reasons_name_three_then_the_count(built: Project) -> None:
    for n in range(1, 6):
        built.write(f"alpha/environments/n{n}.txt", f"{n}\n")
    result = built.run()
    assert_ok(result)
    assert _line_after(result.output, ".  build:alpha") == (
        "build:alpha: rebuilding: file environments/n1.txt added; file environments/n2.txt added; "
        "file environments/n3.txt added; and 2 more"), result
    table = line_with(result.output, "build:alpha", "built")
    assert table and "(+4 more)" in table, result


# -- item 4: say why afterwards --------------------------------------------------------------------

def test_info_after_the_rerun_says_when_and_why_for_every_stage(built: Project) -> None:
    built.append("common/scripts/hello.sh", "echo hello again\n")
    assert_ok(built.run())
    info = built.info("chain:common")
    assert "status     : up-to-date" in info.output, info
    assert _last_run(info.output) == "rebuilt because file scripts/hello.sh changed", info
    assert (_last_run(built.info("build:alpha").output) or "").startswith("rebuilt because parent changed sha256:")
    for task in ("test:alpha", "drift:alpha", "manifest:alpha"):
        out = built.info(task).output
        assert (_last_run(out) or "").startswith("reran because image "), (task, out)
    record = json.loads((built.root / "build" / "runs" / "chain-common.json").read_text())
    assert record["reason"] == "file scripts/hello.sh changed" and record["result"] == "built"
    # A stage that did not run this time keeps its earlier record.
    assert _last_run(built.info("chain:certs").output) == "rebuilt because image " \
        f"{built.local_image('certs')} is missing"


# -- item 5: say why ahead of time, across the DAG -------------------------------------------------

def test_info_names_the_first_stale_ancestor_before_the_run(built: Project) -> None:
    built.append("common/Dockerfile.certs", "RUN echo certs-v2 > /certs-v2\n")
    cause = "chain:certs is stale (Dockerfile common/Dockerfile.certs changed)"
    assert_reason(built.info("chain:common"), f"will rebuild: parent {cause}")
    assert_reason(built.info("build:alpha"), f"will rebuild: ancestor {cause}")
    assert_reason(built.info("test:alpha"), f"will rerun: ancestor {cause}")
    assert "status     : run" in built.info("manifest:beta").output
    # looking ran nothing: the real run still has the work to do
    assert_image_stages(built.run(), IMAGE_STAGES - {"root"})


# -- item 6: a machine-readable record of each run -------------------------------------------------

def test_last_run_json_and_step_summary_match_the_summary_table(
        docker_client: docker.DockerClient, tmp_path: Path, built: Project) -> None:
    built.append("alpha/Dockerfile.custom", "RUN echo more > /more\n")
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    result = built.run(env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert_ok(result)
    table = summary_rows(result.output, raw=True)
    report = json.loads((built.root / "build" / "reports" / "last-run.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert {name: s["result"] for name, s in stages.items()} == table
    assert report["totals"] == result.output.rstrip().splitlines()[-1]
    alpha = stages["build:alpha"]
    assert alpha["reason"] == "Dockerfile alpha/Dockerfile.custom changed" and alpha["why"] == alpha["reason"]
    assert alpha["image"] == image_id(docker_client, built.mission_tag("alpha"))
    assert isinstance(alpha["size"], int) and alpha["size"] > 0 and isinstance(alpha["seconds"], float)
    assert stages["build:beta"]["result"] == "up to date" and "is current" in stages["build:beta"]["reason"]
    markdown = step_summary.read_text()
    assert markdown.startswith("earlier step\n")
    assert "| stage | result | time | image size | why |" in markdown
    assert "| `build:alpha` | built |" in markdown and "Dockerfile alpha/Dockerfile.custom changed |" in markdown
    assert markdown.count("\n| `") == len(table)

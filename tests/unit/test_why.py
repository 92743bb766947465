"""Why stages rerun, without a daemon: reason wording, run records, the run report, the bundled trailer's
inputs per mode, and which tasks may write into the tracked tree."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import runlog, runreport
from pipeline.buildctx.collect import Collector
from pipeline.dockerfile.analysis import BaseImage, analyse
from pipeline.hashing import FileHasher
from pipeline.plan import FROZEN_SPECS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("reasons", "text"), [
    (["a"], "a"),
    (["a", "b", "c"], "a; b; c"),
    (["a", "b", "c", "d"], "a; b; c; and 1 more"),
    (["a", "b", "c", "d", "e"], "a; b; c; and 2 more"),
])
def test_join_reasons_names_three_then_the_count(reasons: list[str], text: str) -> None:
    assert runlog.join_reasons(reasons) == text


@pytest.mark.parametrize(("task", "result", "text"), [
    ("build:fx1", "built", "last run 2026-12-01 06:31:02 UTC: rebuilt because file app.txt changed"),
    ("chain:common", "pulled", "last run 2026-12-01 06:31:02 UTC: pulled from the stage cache because file app.txt changed"),
    ("test:fx1", "ran", "last run 2026-12-01 06:31:02 UTC: reran because file app.txt changed"),
    ("build:fx1", "FAILED", "last run 2026-12-01 06:31:02 UTC: FAILED while rebuilding because file app.txt changed"),
    ("scan:fx1", "FAILED", "last run 2026-12-01 06:31:02 UTC: FAILED while rerunning because file app.txt changed"),
])
def test_run_record_describes_when_and_why(task: str, result: str, text: str) -> None:
    assert runlog.RunRecord(task, result, "file app.txt changed", "2026-12-01 06:31:02 UTC").describe() == text


def test_run_records_round_trip_and_tolerate_damage(tmp_path: Path) -> None:
    record = runlog.RunRecord("build:fx1", "built", "image missing", runlog.utc(0), 1.5, "sha256:ab", 10)
    runlog.save(tmp_path, record)
    assert runlog.load(tmp_path, "build:fx1") == record
    assert record.started == "1970-01-01 00:00:00 UTC"
    (tmp_path / "runs" / "build-fx1.json").write_text("{not json")
    assert runlog.load(tmp_path, "build:fx1") is None
    assert runlog.load(tmp_path, "build:other") is None


@pytest.mark.parametrize(("task", "verb"), [
    ("root", "rebuilding"), ("chain:common", "rebuilding"), ("build:demo", "rebuilding"),
    ("test:demo", "rerunning"), ("scan:demo", "rerunning"), ("manifest:demo", "rerunning"),
])
def test_verbs(task: str, verb: str) -> None:
    assert runlog.verb(task) == verb


def _row(stage: str, result: str, why: str = "") -> runreport.StageRow:
    return runreport.StageRow(stage, result, why, why, None, 1.25, None, None, "")


def test_markdown_table_escapes_cells(tmp_path: Path) -> None:
    rows = [_row("build:fx1", "built", "build arg X changed: 'a|b' -> 'c'"), _row("test:fx1", "up to date")]
    text = runreport.markdown(rows, "2 stages: 1 ran, 1 up to date, 0 failed")
    assert "| `build:fx1` | built | 1.2 s |  | build arg X changed: 'a\\|b' -> 'c' |" in text
    assert text.startswith("### doit: 2 stages")
    path = runreport.write_json(tmp_path, rows, started="s", finished="f", totals="t")
    data = json.loads(path.read_text())
    assert [s["stage"] for s in data["stages"]] == ["build:fx1", "test:fx1"] and data["totals"] == "t"


def test_step_summary_is_appended_only_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert runreport.append_step_summary([_row("a", "ran")], "t") is None
    target = tmp_path / "summary.md"
    target.write_text("before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    runreport.append_step_summary([_row("a", "ran")], "t")
    runreport.append_step_summary([_row("a", "ran")], "t")
    assert target.read_text().startswith("before\n") and target.read_text().count("| `a` | ran |") == 2


@pytest.mark.parametrize(("frozen", "pins_in_key"), [(False, False), (True, True)])
def test_bundled_trailer_keys_the_pins_only_in_frozen_mode(frozen: bool, pins_in_key: bool) -> None:
    demo = REPO / "deployments" / "demo"
    text = (demo / "Dockerfile.custom").read_text() + (REPO / "deployments" / "common" / "Dockerfile.trailer").read_text()
    parent = "sha256:" + "0" * 64
    args = {"BASE_IMAGE": parent, "USE_FROZEN": "1" if frozen else "0", "FROZEN_SPECS": FROZEN_SPECS["frozen" if frozen else "floating"]}
    model = analyse(text, buildargs=args, images=lambda ref, line: BaseImage(parent), buildkit=False)
    collector = Collector(demo, FileHasher(None), allow_empty_globs=False)
    for source in model.sources:
        collector.add(source)
    files = sorted(collector.entries)
    assert any(f.startswith("environments/") for f in files)
    assert any(f.startswith("env-frozen/") for f in files) is pins_in_key, files


def test_no_default_task_and_nothing_image_all_needs_writes_env_frozen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dodo
    from pipeline.tasks import context

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_DEPLOYMENTS_DIR", str(REPO / "deployments"))
    monkeypatch.setattr(context, "_context", None)
    deps: dict[str, list[str]] = {}
    for name in dir(dodo):
        if not name.startswith("task_"):
            continue
        made = getattr(dodo, name)()
        for entry in ([made] if isinstance(made, dict) else list(made)):
            base = entry.get("basename", name[5:])
            full = f"{base}:{entry['name']}" if entry.get("name") else base
            deps[full] = list(entry.get("task_dep", []))
    monkeypatch.setattr(context, "_context", None)

    def closure(roots: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            task = todo.pop()
            if task not in seen:
                seen.add(task)
                todo += deps.get(task, []) + [t for t in deps if t.startswith(task + ":")]
        return seen

    assert not {t for t in closure(dodo.DOIT_CONFIG["default_tasks"]) if t.startswith("freeze")}
    assert not {t for t in closure(["image_all"]) if t.startswith("freeze")}
    assert "drift:demo" in closure(dodo.DOIT_CONFIG["default_tasks"])

"""sscan on a fixture tree, through doit (`-f REPO/dodo.py -d TREE`), with the real scanners.

No Docker: the tree's pipeline.yaml names a root image that is never built.
deps runs offline (pip-audit off, an OSV fixture) except in the test that
checks that an unreachable PyPI makes pip-audit fail instead of pass.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import RunResult, run_doit

SCANNERS = ("yaml", "lint", "bandit", "deps")
CLEAN_PY = '"""A clean module."""\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n    return a + b\n'
CLEAN_SCRIPT = '#!/usr/bin/env python3\n"""Say hello."""\nimport sys\n\nsys.stdout.write("hello\\n")\n'
ADVISORY = {
    "id": "EXAMPLE-2026-0001",
    "aliases": ["CVE-2026-99999"],
    "summary": "examplepkg before 1.2.0 runs anything",
    "affected": [{
        "package": {"ecosystem": "PyPI", "name": "ExamplePkg"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}]}],
    }],
}


def write(root: Path, rel: str, text: str, *, executable: bool = False) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def make_tree(base: Path, sscan: dict[str, Any] | None = None) -> Path:
    """A clean project: deployments/ with one deployment, Python code, YAML, a frozen requirements file."""
    root = base / "tree"
    config = {"root": {"image": "scratch"}, "namespace": "sscan-test",
              "sscan": sscan if sscan is not None else {"pip_audit": False, "osv": "osv"}}
    write(root, "deployments/pipeline.yaml", yaml.safe_dump(config, sort_keys=False))
    write(root, "deployments/osv/EXAMPLE-2026-0001.json", json.dumps(ADVISORY))
    write(root, "deployments/alpha/deployment.yaml", "repo: alpha\n")
    write(root, "deployments/alpha/Dockerfile.custom", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    write(root, "deployments/alpha/env-frozen/main/requirements.txt",
          "# pip freeze\nexamplepkg==1.2.0\nother-package==3.1\n")
    write(root, "deployments/alpha/config/settings.yml", "---\na: 1\n---\nb: [1, 2]\n")
    write(root, "deployments/alpha/scripts/hello", CLEAN_SCRIPT, executable=True)
    write(root, "deployments/alpha/scripts/notes", "#!/bin/sh\nimport os  # a shell script: not Python\n")
    write(root, "tools/ok.py", CLEAN_PY)
    # Never scanned: virtualenvs, build output, git internals, the secrets checkouts.
    for excluded in (".venv/lib/bad.py", "build/bad.py", "deployments/alpha/secrets/bad.py", "node_modules/x/bad.py"):
        write(root, excluded, "import os\n")
    for excluded in (".venv/bad.yaml", "deployments/alpha/secrets/bad.yaml", ".git/bad.yaml"):
        write(root, excluded, "a: [\n")
    return root


def sscan(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> RunResult:
    return run_doit(root, *args, env=env, timeout=timeout)


def verdict_line(result: RunResult, scanner: str) -> str:
    pattern = re.compile(rf"^(OK|ERROR)\s+sscan:{scanner}\s")
    lines = [line for line in result.output.splitlines() if pattern.match(line)]
    assert lines, f"no OK/ERROR line for {scanner}\n{result}"
    return lines[-1]


def assert_verdicts(result: RunResult, **expected: str) -> None:
    for scanner, verdict in expected.items():
        line = verdict_line(result, scanner)
        assert line.startswith(verdict), f"{scanner}: expected {verdict}, got {line!r}\n{result}"


def test_clean_tree_passes_then_everything_is_up_to_date(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    first = sscan(root, "sscan")
    assert first.rc == 0, str(first)
    assert "Traceback" not in first.output
    assert_verdicts(first, yaml="OK", lint="OK", bandit="OK", deps="OK")
    assert "3 YAML files load" in verdict_line(first, "yaml")  # pipeline.yaml, deployment.yaml, settings.yml
    assert "2 Python files" in verdict_line(first, "lint")  # tools/ok.py and the python-shebang script
    assert "sscan: 4 scanners OK" in first.output
    for scanner in SCANNERS:
        record = json.loads((root / "build" / "sscan" / f"{scanner}.json").read_text())
        assert record["ok"] is True and record["key"].startswith("sha256:")

    second = sscan(root, "sscan")
    assert second.rc == 0, str(second)
    for scanner in SCANNERS:
        assert verdict_line(second, scanner).endswith("(up to date)"), str(second)
    alone = sscan(root, *(f"sscan:{s}" for s in SCANNERS))
    assert alone.rc == 0 and alone.ran == set(), str(alone)
    assert alone.uptodate == {f"sscan:{s}" for s in SCANNERS}, str(alone)

    # A changed input makes exactly that scanner stale, and `doit info` names the file.
    write(root, "tools/ok.py", CLEAN_PY + "\n\ndef sub(a: int, b: int) -> int:\n    \"\"\"Subtract.\"\"\"\n    return a - b\n")
    info = sscan(root, "info", "sscan:lint")
    assert "changed: tools/ok.py" in info.output, str(info)
    again = sscan(root, *(f"sscan:{s}" for s in SCANNERS))
    assert again.rc == 0 and again.ran == {"sscan:lint", "sscan:bandit"}, str(again)


def test_each_scanner_reports_its_findings_and_the_run_fails(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    write(root, "deployments/alpha/broken.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    write(root, "deployments/alpha/scripts/tool", "#!/usr/bin/python3\nimport os\nimport sys\n\nsys.exit(0)\n",
          executable=True)
    write(root, "tools/runner.py", '"""Runs things."""\nimport subprocess\n\n\ndef go(cmd: str) -> int:\n'
          '    """Run cmd."""\n    return subprocess.call(cmd, shell=True)\n')
    write(root, "deployments/alpha/env-frozen/main/requirements.txt", "examplepkg==1.1.0\nother-package==3.1\n")

    result = sscan(root, "sscan")
    assert result.rc == 1, str(result)
    assert "Traceback" not in result.output
    assert_verdicts(result, yaml="ERROR", lint="ERROR", bandit="ERROR", deps="ERROR")
    assert "4 scanners failed: yaml, lint, bandit, deps" in result.output
    # findings: file:line and what
    assert re.search(r"deployments/alpha/broken\.yaml:[34]: ", result.output), str(result)
    assert re.search(r"deployments/alpha/scripts/tool:2: F401 ", result.output), str(result)  # extensionless, linted
    assert re.search(r"tools/runner\.py:7: B602 ", result.output), str(result)
    assert re.search(r"requirements\.txt: examplepkg==1\.1\.0 CVE-2026-99999 .*fixed in 1\.2\.0", result.output), \
        str(result)
    assert "bad.py" not in result.output and "bad.yaml" not in result.output  # excluded folders

    # Each scanner alone fails too, stays stale, and `doit info` says why.
    alone = sscan(root, "sscan:yaml")
    assert alone.rc == 1 and "ERROR: sscan:yaml: 1 of" in alone.output, str(alone)
    info = sscan(root, "info", "sscan:yaml")
    assert "failed last time" in info.output, str(info)

    # Fixing the file makes it pass, and then it is up to date.
    write(root, "deployments/alpha/broken.yaml", "a: 1\nb: [1, 2]\nc: 3\n")
    fixed = sscan(root, "sscan:yaml")
    assert fixed.rc == 0 and fixed.ran == {"sscan:yaml"}, str(fixed)
    assert sscan(root, "sscan:yaml").uptodate == {"sscan:yaml"}


def test_ignore_entries_expire_and_unknown_ones_are_reported(tmp_path: Path) -> None:
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    past = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    root = make_tree(tmp_path, {"pip_audit": False, "osv": "osv", "ignore": ["ignore.yaml"]})
    write(root, "deployments/alpha/env-frozen/main/requirements.txt", "examplepkg==1.1.0\n")
    write(root, "deployments/ignore.yaml", yaml.safe_dump([
        {"id": "CVE-2026-99999", "reason": "not reachable from the notebook", "expires": future, "package": "examplepkg"},
        {"id": "GHSA-0000-0000-0000", "reason": "old one", "expires": future},
    ]))
    result = sscan(root, "sscan:deps")
    assert result.rc == 0, str(result)
    assert "ignored: deployments/alpha/env-frozen/main/requirements.txt: examplepkg==1.1.0" in result.output
    assert "ignore entry GHSA-0000-0000-0000 in deployments/ignore.yaml matched no finding" in result.output

    write(root, "deployments/ignore.yaml", yaml.safe_dump([
        {"id": "EXAMPLE-2026-0001", "reason": "was not reachable", "expires": past},
    ]))
    expired = sscan(root, "sscan:deps")
    assert expired.rc == 1, str(expired)
    assert f"ignore entry EXAMPLE-2026-0001 in deployments/ignore.yaml expired on {past}" in expired.output
    assert "1 vulnerable packages" in expired.output

    write(root, "deployments/ignore.yaml", "- id: X\n  reason: r\n  expires: someday\n")
    invalid = sscan(root, "sscan:deps")
    assert invalid.rc == 1 and "Traceback" not in invalid.output, str(invalid)
    assert "deployments/ignore.yaml:3: key '[0].expires' must be a date" in invalid.output, str(invalid)


def test_pip_audit_that_cannot_reach_pypi_fails_instead_of_passing(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"pip_audit": True, "timeout": 120})
    write(root, "deployments/alpha/env-frozen/main/requirements.txt", "requests==2.31.0\n")
    unreachable = "http://127.0.0.1:1"
    env = {"HTTPS_PROXY": unreachable, "https_proxy": unreachable, "HTTP_PROXY": unreachable,
           "http_proxy": unreachable, "NO_PROXY": "", "no_proxy": "", "PIP_INDEX_URL": f"{unreachable}/simple"}
    started = time.monotonic()
    result = sscan(root, "sscan:deps", env=env, timeout=240)
    assert time.monotonic() - started < 200
    assert result.rc != 0, f"pip-audit passed without reaching PyPI\n{result}"
    assert "Traceback" not in result.output
    assert "could not audit" in verdict_line(result, "deps"), str(result)
    # what failed, with host and port (no urllib3 repr cut mid-token), and what to do
    assert "cannot reach pypi.org:443 through the proxy 127.0.0.1:1 (connection refused)" in result.output, str(result)
    assert "[Errno" not in result.output and "check access to PyPI" in result.output, str(result)
    assert not (json.loads((root / "build" / "sscan" / "deps.json").read_text())["ok"])
    summary = sscan(root, "sscan", env=env, timeout=240)
    assert summary.rc == 1 and verdict_line(summary, "deps").startswith("ERROR"), str(summary)
    assert "1 scanner failed: deps" in summary.output


def test_invalid_sscan_config_is_a_config_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"pip_audit": False, "osv": "missing-osv"})
    result = sscan(root, "sscan")
    assert result.rc == 3, str(result)
    assert "deployments/pipeline.yaml" in result.output and "sscan.osv" in result.output, str(result)


@pytest.mark.parametrize("scanner", SCANNERS)
def test_info_before_the_first_run(tmp_path: Path, scanner: str) -> None:
    result = sscan(make_tree(tmp_path), "info", f"sscan:{scanner}")
    assert "has not run yet" in result.output, str(result)

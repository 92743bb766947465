"""Running a scanner program from the pipeline's environment; reading its output."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import ScanIncomplete
from pipeline.run import CommandResult, run
from pipeline.settings import Settings
from pipeline.stages import sscan_files as files

_PACKAGES = {"ruff": "ruff", "bandit": "bandit", "pip_audit": "pip-audit"}


def _module_command(module: str) -> list[str]:
    """``python -m MODULE`` from the pipeline's own environment.

    Raises:
        ScanIncomplete: the tool is not installed.
    """
    if importlib.util.find_spec(module) is None:
        package = _PACKAGES[module]
        raise ScanIncomplete(f"{package} is not installed: pip install {package} (scripts/setup installs it)")
    return [files.python_executable(), "-m", module]


def _condensed(output: str) -> str:
    """The one line of a tool's output that says what went wrong (shortened at a word, never mid-token)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("ERROR", "error:")) or "Error:" in line:
            return _at_word(re.sub(r"^(ERROR|WARNING):[\w.]+:", "", line).strip())
    return _at_word(lines[-1]) if lines else "(no output)"


def _at_word(text: str, limit: int = 300) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " … (the whole output is in the task's log)"


_POOL = re.compile(r"HTTPS?ConnectionPool\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)")
_CONN = re.compile(r"HTTPS?Connection\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)")
_CAUSES = (
    ("connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("name or service not known", "the host name does not resolve"),
    ("temporary failure in name resolution", "the host name does not resolve"),
    ("certificate_verify_failed", "its TLS certificate is not trusted (set REQUESTS_CA_BUNDLE to the CA bundle)"),
)


def unreachable(output: str) -> str:
    """For a tool (pip-audit) that died on a network error: what it could not reach, host and port, and why.

    "" when the output shows no network error. Reads the exception text, so nothing cut mid-token is shown.
    """
    lines = [line for line in output.splitlines() if "ConnectionPool(host=" in line]
    if not lines:
        return ""
    line = lines[-1]
    target = _POOL.search(line)
    if target is None:
        return ""
    lowered = line.lower()
    cause = next((words for needle, words in _CAUSES if needle in lowered), "the connection failed")
    where = f"{target['host']}:{target['port']}"
    if "proxyerror" in lowered:
        proxy = _CONN.search(line)
        via = f"the proxy {proxy['host']}:{proxy['port']}" if proxy else "the proxy"
        return f"cannot reach {where} through {via} ({cause})"
    return f"cannot reach {where} ({cause})"


def run_json_tool(settings: Settings, module: str, argv: Callable[[list[str], Path], list[str]],
                  empty: str = "") -> tuple[CommandResult, Any] | str:
    """Run ``python -m module`` with ``argv(command, report_path)`` in the project root; its JSON report.

    Returns (result, the parsed report or None), or the reason the tool is not available.
    """
    with tempfile.TemporaryDirectory(prefix="sscan-") as tmp:
        out = Path(tmp) / f"{module}.json"
        try:
            command = _module_command(module)
        except ScanIncomplete as exc:
            return str(exc)
        result = run(argv(command, out), check=False, cwd=files.project_root(settings), timeout=settings.sscan.timeout)
        try:
            report = json.loads(out.read_text() or empty)
        except (OSError, ValueError):
            report = None
    return result, report

"""Finding a docker CLI that builds with BuildKit (for builder.buildkit: true)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import PipelineError


def find_buildkit_cli(preferred: str | None = None) -> str:
    """A docker CLI that builds with BuildKit: one with buildx, or a pre-23 client (BuildKit built in).

    Raises:
        PipelineError: none found, with what to install.
    """
    candidates = [preferred, os.environ.get("PIPELINE_DOCKER_CLI"), "/usr/bin/docker", shutil.which("docker")]
    seen: set[str] = set()
    for cli in candidates:
        if not cli or cli in seen or not Path(cli).is_file():
            continue
        seen.add(cli)
        if _cli_supports_buildkit(cli):
            return cli
    raise PipelineError(
        "builder.buildkit is on but no BuildKit-capable docker CLI was found (tried: "
        + (", ".join(sorted(seen)) or "none")
        + "); install Debian's docker.io (apt-get install docker.io), or docker buildx, "
        "or set PIPELINE_DOCKER_CLI, or set builder.buildkit: false"
    )


def _cli_supports_buildkit(cli: str) -> bool:
    def quiet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], capture_output=True, text=True, timeout=30, check=False)

    try:
        if quiet("buildx", "version").returncode == 0:
            return True
        version = quiet("version", "--format", "{{.Client.Version}}").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) < 23

"""Registry credentials: environment variables named in the config, else docker's credential config."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.settings import Registry


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"

    def auth_config(self) -> dict[str, str]:
        """The docker SDK's auth_config for push and pull."""
        return {"username": self.username, "password": self.password}


def from_environment(registry: Registry, environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials from ``username_env`` / ``password_env``.

    Raises:
        ConfigError: only one of the two is configured, or a named variable is unset.
    """
    if not registry.username_env and not registry.password_env:
        return None
    if not (registry.username_env and registry.password_env):
        raise ConfigError(f"registry {registry.host}: set both registry.username_env and registry.password_env")
    missing = [name for name in (registry.username_env, registry.password_env) if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"registry {registry.host}: environment variable {', '.join(missing)} is not set "
            "(named by registry.username_env/password_env); export it or remove those keys"
        )
    return Credentials(environ[registry.username_env], environ[registry.password_env])


def from_docker_config(host: str, config_dir: Path | None = None) -> Credentials | None:
    """What `docker login HOST` stored: ``auths`` entries, ``credHelpers`` or ``credsStore``."""
    directory = config_dir or Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        found = _from_helper(helper, host)
        if found:
            return found
    for key, entry in (config.get("auths") or {}).items():
        if _strip_scheme(key) == host and isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return Credentials(user, password)
    return None


def _from_helper(helper: str, host: str) -> Credentials | None:
    try:
        proc = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True, timeout=30, check=False
        )
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not data or not data.get("Secret"):
        return None
    return Credentials(data.get("Username", ""), data["Secret"])


def _strip_scheme(key: str) -> str:
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]

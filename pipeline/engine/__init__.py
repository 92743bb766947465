"""The one Docker SDK wrapper: Engine, made of its parts below.

Only this package imports ``docker``.  It honours DOCKER_HOST (unix, tcp with
or without TLS, ssh) through the SDK's own environment handling, connects
lazily (listing tasks needs no daemon), streams build output into the task log
and reads errors out of the SDK's streams, which report them instead of raising.

connection.py       host choice (DOCKER_HOST, docker context), lazy connect, error translation
image_calls.py      inspect, tag, pull, push, import, history, copy out, remove
container_calls.py  containers for patches and squashes: create, copy in, run, commit, export
build_calls.py      builds: the Engine API's classic builder, or a BuildKit-capable CLI
cli.py              finding that CLI
client.py           Engine, the class the rest of the pipeline uses
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.engine.build_calls import BuildRequest
    from pipeline.engine.cli import find_buildkit_cli
    from pipeline.engine.client import Engine
    from pipeline.engine.connection import DEFAULT_HOST, ImageInfo

# Imported on first use (PEP 562): a no-op run needs ImageInfo and DEFAULT_HOST (connection.py, light)
# but never the build and container calls, with tarfile and the command runner behind them.
_WHERE = {"BuildRequest": "build_calls", "find_buildkit_cli": "cli", "Engine": "client",
          "DEFAULT_HOST": "connection", "ImageInfo": "connection"}
__all__ = ["DEFAULT_HOST", "BuildRequest", "Engine", "ImageInfo", "find_buildkit_cli"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

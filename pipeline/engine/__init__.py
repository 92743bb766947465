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

from pipeline.engine.build_calls import BuildRequest
from pipeline.engine.cli import find_buildkit_cli
from pipeline.engine.client import Engine
from pipeline.engine.connection import DEFAULT_HOST, ImageInfo

__all__ = ["DEFAULT_HOST", "BuildRequest", "Engine", "ImageInfo", "find_buildkit_cli"]

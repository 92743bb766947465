"""Engine builds: the Engine API's classic builder, or a BuildKit-capable docker CLI."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.buildctx import DOCKERFILE_NAME
from pipeline.engine.connection import _stream_error
from pipeline.engine.image_calls import ImageCalls
from pipeline.errors import BuildFailed, CommandFailed
from pipeline.run import run

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
TAIL = 15


@dataclass(frozen=True)
class BuildRequest:
    """One Dockerfile build: ``task`` names it in messages and logs."""

    task: str
    context: Path
    dockerfile: Path
    buildargs: Mapping[str, str]
    labels: Mapping[str, str]
    # The context the pipeline writes itself (pipeline.buildctx.send.BuildContext): when set, the
    # build reads it instead of the ``context`` directory, and ``dockerfile`` is only for messages.
    files: Any = None
    # Build args whose values are image IDs: BuildKit cannot resolve FROM by ID, so the CLI path
    # gives each a one-off tag for the build.
    id_args: frozenset[str] = frozenset()


class BuildCalls(ImageCalls):
    # -- builds ---------------------------------------------------------------------------

    def build(self, req: BuildRequest, *, buildkit_cli: str | None = None) -> str:
        """Build ``req``; returns the untagged image ID.

        Uses the Engine API (classic builder) unless ``buildkit_cli`` names a
        BuildKit-capable docker CLI (see :func:`find_buildkit_cli`).

        Raises:
            BuildFailed: with the failing step and the last lines of its output.
            EngineUnavailable: the daemon went away.
        """
        if buildkit_cli:
            return self._build_cli(req, buildkit_cli)
        return self._build_api(req)

    def _build_api(self, req: BuildRequest) -> str:
        task = req.task
        if req.files is not None:
            source: dict[str, Any] = {"fileobj": req.files.tar(), "custom_context": True,
                                      "dockerfile": DOCKERFILE_NAME}
        else:
            source = {"path": str(req.context), "dockerfile": str(req.dockerfile)}
        with self._call(f"{task}: build"):
            stream = self.api.build(
                **source,
                buildargs=dict(req.buildargs),
                labels=dict(req.labels),
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            try:
                image_id, step, step_no, recent = self._follow_build(task, stream)
            finally:
                stream.close()  # an early error leaves the response open otherwise
        if not image_id:
            raise BuildFailed(_failure(task, step, "the engine reported no image ID", recent), step=step_no)
        return image_id

    def _follow_build(self, task: str, stream: Iterator[dict[str, Any]]) -> tuple[str, str, int | None, deque[str]]:
        step, step_no = "the build's start", None
        recent: deque[str] = deque(maxlen=TAIL)
        image_id = ""
        for event in stream:
            if "error" in event or "errorDetail" in event:
                raise BuildFailed(_failure(task, step, _stream_error(event), recent), step=step_no)
            text = event.get("stream")
            if text:
                for line in _ANSI.sub("", text).rstrip("\n").split("\n"):
                    if not line.strip():
                        continue
                    log.info("%s", line)
                    if line.startswith("Step "):
                        step, recent = line, deque(maxlen=TAIL)
                        number = line[5:].split("/", 1)[0]
                        step_no = int(number) if number.isdigit() else None
                    else:
                        recent.append(line)
                    if line.startswith("Successfully built "):
                        image_id = image_id or line.split()[-1]
            elif event.get("status"):
                log.debug("%s", event["status"])
            aux = event.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
        return image_id, step, step_no, recent

    def _build_cli(self, req: BuildRequest, cli: str) -> str:
        """Build through a docker CLI with DOCKER_BUILDKIT=1; the CLI's output is streamed and kept.

        The pipeline's context is written to a temporary directory first: a tar on
        stdin would make BuildKit copy the Dockerfile and ignore .dockerignore.
        """
        with tempfile.TemporaryDirectory(prefix="pipeline-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            if req.files is not None:
                dockerfile, context = req.files.materialize(Path(tmp)), Path(tmp) / "context"
            else:
                dockerfile, context = req.dockerfile, req.context
            argv: list[str] = [cli, "build", "--progress=plain", "-f", str(dockerfile), "--iidfile", str(iidfile)]
            one_off: list[str] = []
            try:
                for key, value in req.buildargs.items():
                    if key in req.id_args and value.startswith("sha256:"):
                        value = f"pipeline-build-parent:{value.split(':', 1)[1][:32]}-{os.urandom(4).hex()}"
                        self.tag(req.buildargs[key], value)
                        one_off.append(value)
                    argv += ["--build-arg", f"{key}={value}"]
                for key, value in req.labels.items():
                    argv += ["--label", f"{key}={value}"]
                argv.append(str(context))
                env = {**os.environ, "DOCKER_BUILDKIT": "1"}
                if self._host:
                    env["DOCKER_HOST"] = self._host
                try:
                    run(argv, stream=True, env=env)
                except CommandFailed as exc:
                    raise BuildFailed(f"{req.task}: BuildKit build failed: {exc}") from None
                return iidfile.read_text().strip()
            finally:
                for ref in one_off:
                    self.untag(ref)


def _failure(task: str, step: str, detail: str, recent: Iterable[str]) -> str:
    tail = "\n".join(f"    {line}" for line in recent if line.strip())
    return f"{task}: build failed at {step.strip()}: {detail.strip()}" + (f"\n  last output:\n{tail}" if tail else "")

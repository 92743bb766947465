"""Engine: one lazily connected Docker Engine client, made of its image, container and build calls."""

from __future__ import annotations

from pipeline.engine.build_calls import BuildCalls
from pipeline.engine.container_calls import ContainerCalls


class Engine(BuildCalls, ContainerCalls):
    """A lazily connected Docker Engine client."""

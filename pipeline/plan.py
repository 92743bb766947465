"""What the DAG builds: one ImageSpec per chain layer and per deployment's mission image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Deployment, Settings

# Image labels the pipeline writes and reads.
LABEL_INPUTS = "pipeline.inputs"
LABEL_STAGE = "pipeline.stage"
LABEL_DEPLOYMENT = "pipeline.deployment"
LABEL_NAMESPACE = "pipeline.namespace"

# The build arg FROZEN_SPECS names the context folder a trailer copies as the pinned specs:
# the committed pins in frozen mode, the loose specs in floating mode.  So a floating build
# neither reads nor keys on env-frozen/ (it writes its own pip freeze), and a frozen one does.
FROZEN_SPECS = {True: "env-frozen", False: "environments"}


@dataclass(frozen=True)
class ImageSpec:
    """One Dockerfile build in the DAG."""

    task: str  # "chain:NAME" or "build:DEPLOYMENT": also the pipeline.stage label
    ref: str  # the local tag
    parent_ref: str
    parent_task: str
    sources: tuple[Path, ...]  # Dockerfile parts, concatenated in this order
    context: Path
    buildargs: Mapping[str, str]
    rendered_path: Path
    deployment: str | None = None

    def labels(self, settings: Settings, inputs: str) -> dict[str, str]:
        labels = {LABEL_INPUTS: inputs, LABEL_STAGE: self.task, LABEL_NAMESPACE: settings.namespace}
        if self.deployment:
            labels[LABEL_DEPLOYMENT] = self.deployment
        return labels


def _args(settings: Settings, parent_ref: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        **(extra or {}),
        "BASE_IMAGE": parent_ref,
        "USE_FROZEN": "1" if settings.frozen else "0",
        "FROZEN_SPECS": FROZEN_SPECS[settings.frozen],
    }


def chain_specs(settings: Settings) -> list[ImageSpec]:
    """The shared layers in order: the first FROM the root, each next FROM the previous."""
    specs: list[ImageSpec] = []
    parent_ref, parent_task = settings.root_ref, "root"
    for layer in settings.chain:
        task = f"chain:{layer.name}"
        specs.append(
            ImageSpec(
                task=task,
                ref=settings.layer_ref(layer),
                parent_ref=parent_ref,
                parent_task=parent_task,
                sources=(layer.dockerfile,),
                context=layer.context,
                buildargs=_args(settings, parent_ref),
                rendered_path=settings.build_dir / "dockerfiles" / f"chain-{layer.name}.Dockerfile",
            )
        )
        parent_ref, parent_task = settings.layer_ref(layer), task
    return specs


def mission_spec(settings: Settings, dep: Deployment) -> ImageSpec:
    """The deployment's image: its Dockerfile(.custom) plus the trailer, FROM the top of the chain."""
    sources = (dep.dockerfile, settings.trailer) if dep.trailer and settings.trailer else (dep.dockerfile,)
    parent_task = f"chain:{settings.chain[-1].name}" if settings.chain else "root"
    return ImageSpec(
        task=f"build:{dep.name}",
        ref=dep.image_ref(settings.environment),
        parent_ref=settings.top_ref,
        parent_task=parent_task,
        sources=sources,
        context=dep.folder,
        buildargs=_args(settings, settings.top_ref, dep.build_args),
        rendered_path=settings.build_dir / "dockerfiles" / f"{dep.name}.Dockerfile",
        deployment=dep.name,
    )

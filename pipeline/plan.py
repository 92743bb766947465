"""What the DAG builds: one ImageSpec per chain layer and per deployment's mission image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Deployment, Settings
from pipeline.yamlfile import display

# Image labels the pipeline writes and reads.
LABEL_INPUTS = "pipeline.inputs"
LABEL_STAGE = "pipeline.stage"
LABEL_DEPLOYMENT = "pipeline.deployment"
LABEL_NAMESPACE = "pipeline.namespace"

# The build arg FROZEN_SPECS names the context folder a trailer copies as the pinned specs, per pin
# level: the committed pins when frozen, the partially pinned specs when chilly, the loose specs when
# floating.  So a floating or chilly build neither reads nor keys on env-frozen/ (it writes its own
# pip freeze, which freeze:NAME copies there), and a frozen one does.  USE_FROZEN is the old scripts' value.
FROZEN_SPECS = {"frozen": "env-frozen", "chilly": "env-chilly", "floating": "environments"}
USE_FROZEN = {"floating": "0", "frozen": "1", "chilly": "2"}


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
    parent_arg: str = "BASE_IMAGE"  # the ARG the final FROM takes the parent from (base_arg)
    extra_tags: tuple[str, ...] = ()  # templates (pipeline.tagging)
    where: str = ""  # the config entry that names this stage, for messages: "chain[1] in deployments/pipeline.yaml"

    @property
    def repository(self) -> str:
        """The repository of ``ref``: bare extra tags go there."""
        return self.ref.rpartition(":")[0]

    def labels(self, settings: Settings, inputs: str) -> dict[str, str]:
        labels = {LABEL_INPUTS: inputs, LABEL_STAGE: self.task, LABEL_NAMESPACE: settings.namespace}
        if self.deployment:
            labels[LABEL_DEPLOYMENT] = self.deployment
        return labels


def _args(settings: Settings, parent_ref: str, extra: Mapping[str, str] | None = None,
          parent_arg: str = "BASE_IMAGE") -> dict[str, str]:
    return {
        **(extra or {}),
        parent_arg: parent_ref,
        "USE_FROZEN": USE_FROZEN[settings.pins],
        "FROZEN_SPECS": FROZEN_SPECS[settings.pins],
    }


def chain_specs(settings: Settings) -> list[ImageSpec]:
    """The shared layers in order: the first FROM the root, each next FROM the previous."""
    specs: list[ImageSpec] = []
    parent_ref, parent_task = settings.root_ref, "root"
    for index, layer in enumerate(settings.chain):
        task = f"chain:{layer.name}"
        specs.append(
            ImageSpec(
                task=task,
                ref=settings.layer_ref(layer),
                parent_ref=parent_ref,
                parent_task=parent_task,
                sources=(layer.dockerfile,),
                context=layer.context,
                buildargs=_args(settings, parent_ref, layer.build_args, layer.base_arg),
                rendered_path=settings.build_dir / "dockerfiles" / f"chain-{layer.name}.Dockerfile",
                parent_arg=layer.base_arg,
                extra_tags=layer.extra_tags,
                where=f"chain[{index}] (name: {layer.name}) in {display(settings.deployments_dir / 'pipeline.yaml')}",
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
        context=dep.image_dir,
        buildargs=_args(settings, settings.top_ref, dep.build_args, dep.base_arg),
        rendered_path=settings.build_dir / "dockerfiles" / f"{dep.name}.Dockerfile",
        deployment=dep.name,
        parent_arg=dep.base_arg,
        extra_tags=dep.extra_tags,
        where=display(dep.folder / "deployment.yaml"),
    )

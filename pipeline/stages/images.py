"""Chain layers and mission images: Dockerfile builds keyed on their inputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline import keystore, statmemo
from pipeline.buildctx import DOCKERFILE_NAME
from pipeline.buildctx.collect import Collector, ContextError
from pipeline.buildctx.send import BuildContext
from pipeline.dockerfile.analysis import Analysis, BaseImage, ModelError, analyse
from pipeline.dockerfile.parser import Instruction
from pipeline.engine import BuildRequest, ImageInfo, find_buildkit_cli
from pipeline.errors import BuildFailed, ConfigError, ImageNotFound
from pipeline.files import write_text
from pipeline.hashing import FileHasher
from pipeline.keys import PIPELINE_ARGS, InputKey, image_key, keyed_args, short
from pipeline.parents import PLACEHOLDER_ID, locate, parent_problem
from pipeline.plan import LABEL_INPUTS, ImageSpec
from pipeline.settings import Settings
from pipeline.stages.image_check import extra_refs, memo_fingerprint, rendered_text, tagged
from pipeline.stages.results import ImageResult
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildPlan:
    """Everything one image build reads, as keyed: the build is made from this and nothing else."""

    key: InputKey
    context: BuildContext
    buildargs: dict[str, str]  # passed to the build: declared args only, the parent by ID
    parent: ImageInfo
    unused_args: tuple[str, ...]
    instructions: tuple[Instruction, ...]  # of the rendered text, to name the line of a failed step


def plan_build(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> BuildPlan:
    """Model the stage's build: what it reads, its key, and the context that will be sent.

    Raises:
        ImageNotFound: the parent image does not exist yet.
        ConfigError: a Dockerfile or context file cannot be read, or the model refuses a construct
            (``file:line`` and what to do).
    """
    started_ns = time.time_ns()  # before anything is read: see statmemo's racy rule
    parent = engine.require(spec.parent_ref, f"run `doit {spec.parent_task}` first")
    text, sources = rendered_text(settings, spec)
    buildargs = {**spec.buildargs, spec.parent_arg: parent.id}
    missing: list[ModelError] = []

    def image(ref: str, line: int) -> BaseImage:
        info = parent if ref == parent.id else engine.image(ref)
        if info is None:
            # Said after the parent check: a FROM that ignores the parent is the cause to name first.
            missing.append(ModelError(line, f"image {ref} is not on the Docker engine at {engine.host}; pull or "
                                            "build it first (the key needs its ID)"))
            return BaseImage(PLACEHOLDER_ID)
        config = info.attrs.get("Config") or {}
        return BaseImage(info.id, tuple(config.get("Env") or ()), tuple(config.get("OnBuild") or ()))

    try:
        model = analyse(text, buildargs=buildargs, images=image, buildkit=settings.buildkit)
        _check_parent(model, parent, spec)
        if missing:
            raise missing[0]
        collector = Collector(spec.context, hasher, allow_empty_globs=settings.buildkit)
        for source in model.sources:
            collector.add(source)
    except (ModelError, ContextError) as exc:
        raise ConfigError(f"{locate(spec, exc.line)}: {exc}") from None
    entries = collector.with_parents()
    if DOCKERFILE_NAME in entries:
        raise ConfigError(f"{display(spec.context / DOCKERFILE_NAME)}: the pipeline sends the rendered Dockerfile under "
                          "this name; rename the file")
    declared = model.declared
    key = image_key(
        rendered=text,
        sources=sources,
        files={rel: entry.keyed() for rel, entry in entries.items()},
        images={ref: iid for ref, iid in model.images.items() if iid != parent.id},
        urls=model.urls,
        args=keyed_args(declared, buildargs, spec.parent_arg),
        parent_id=parent.id,
    )
    passed = {k: v for k, v in buildargs.items() if k in declared}
    unused = tuple(sorted(set(spec.buildargs) - set(declared) - PIPELINE_ARGS - {spec.parent_arg}))
    root = str(spec.context)
    statmemo.for_build_dir(settings.build_dir).remember(
        spec.task, memo_fingerprint(settings, spec), key.digest, started_ns=started_ns,
        followed=[*(str(p) for p in spec.sources), root, f"{root}/.dockerignore"],
        links=[f"{root}/{rel}" for rel in dict.fromkeys([*entries, *collector.listed]) if rel != "."],
        images={spec.parent_ref: parent.id, **model.images},
    )
    return BuildPlan(key, BuildContext(spec.context, entries, text), passed, parent, unused, model.instructions)


def check_model(settings: Settings, spec: ImageSpec, text: str) -> None:
    """Refuse what the key could not cover, before the parent exists (the dockerfile stage's check).

    Other images are not looked up here: the build's key does that, with their IDs.

    Raises:
        ConfigError: ``file:line`` and what to do.
    """
    parent_id = PLACEHOLDER_ID
    placeholder = BaseImage(parent_id)
    try:
        model = analyse(text, buildargs={**spec.buildargs, spec.parent_arg: parent_id},
                        images=lambda ref, line: placeholder, buildkit=settings.buildkit)
        if model.final_base != parent_id:
            _check_parent(model, ImageInfo(parent_id, (), {}, 0, {}), spec)
        collector = Collector(spec.context, FileHasher(None), allow_empty_globs=settings.buildkit)
        for source in model.sources:
            if not source.dynamic:  # a path from a variable may need the parent's ENV: the build's key checks it
                collector.add(source)
    except (ModelError, ContextError) as exc:
        raise ConfigError(f"{locate(spec, exc.line)}: {exc}") from None


def _check_parent(model: Analysis, parent: ImageInfo, spec: ImageSpec) -> None:
    problem = parent_problem(model, parent.id, spec)
    if problem is not None:
        raise problem


def current_key(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> InputKey:
    """The input key the stage's image must carry to be current (see :func:`plan_build` for what it raises)."""
    return plan_build(settings, engine, spec, hasher).key


def apply_extra_tags(settings: Settings, engine: Engine, spec: ImageSpec, result: ImageResult) -> tuple[str, ...]:
    """Point the stage's extra tags at its image (names only: never a rebuild); returns those that moved."""
    moved = []
    for ref in extra_refs(settings, spec, result.inputs):
        if not tagged(engine, ref, result.image_id):
            engine.tag(result.image_id, ref)
            log.info("%s: also tagged %s", spec.task, ref)
            moved.append(ref)
    return tuple(moved)


def build_image(settings: Settings, engine: Engine, spec: ImageSpec, hasher: FileHasher) -> ImageResult:
    """Build and tag the stage's image unless its tagged image already carries the current key.

    The build context is written by the pipeline: exactly the entries the key
    lists, plus the rendered Dockerfile.  The parent is passed by ID.  The image
    is built untagged and tagged only after its label and lineage are verified,
    so an interrupted or failed build never moves the tag.

    Raises:
        ImageNotFound: the parent is missing.
        ConfigError: the model refuses the Dockerfile (``file:line``).
        BuildFailed: the build failed (failing step and output tail in the message).
        EngineUnavailable: the daemon went away.
    """
    plan = plan_build(settings, engine, spec, hasher)

    def make() -> str:
        write_text(spec.rendered_path, plan.context.dockerfile)
        for unused in plan.unused_args:
            log.warning("%s: build arg %s is configured but the Dockerfile declares no ARG %s; ignored",
                        spec.task, unused, unused)
        log.info("%s: building %s from %s (context: %d files, %s)", spec.task, spec.ref, display(spec.rendered_path),
                 plan.context.files, _size(plan.context.size()))
        request = BuildRequest(spec.task, spec.context, spec.rendered_path, plan.buildargs,
                               spec.labels(settings, plan.key.digest), files=plan.context,
                               id_args=frozenset({spec.parent_arg}))
        try:
            image_id = engine.build(request, buildkit_cli=find_buildkit_cli() if settings.buildkit else None)
        except BuildFailed as exc:
            raise BuildFailed(_located(spec, plan, exc)) from None
        _check_lineage(engine, spec, image_id, plan.parent)
        return image_id

    result = produce(settings, engine, spec.task, spec.ref, plan.key, make)
    apply_extra_tags(settings, engine, spec, result)
    return result


def _located(spec: ImageSpec, plan: BuildPlan, exc: BuildFailed) -> str:
    """Name the Dockerfile line of a failed step; a missing source means the model missed it."""
    text = str(exc)
    step = getattr(exc, "step", None)
    instructions = plan.instructions
    if step is None or not 0 < step <= len(instructions):
        return text
    where = locate(spec, instructions[step - 1].line)
    if "not found" in text or "no source files" in text or "no such file" in text.lower():
        first = text.splitlines()[0]
        return (f"{where}: {first} (the pipeline sends only the files its key lists; if this path should be "
                "sent, report the Dockerfile form the model missed)")
    return f"{where}: {text}"


def _check_lineage(engine: Engine, spec: ImageSpec, image_id: str, parent: ImageInfo) -> None:
    made = engine.image(image_id)
    if made is None:
        raise ImageNotFound(f"{spec.task}: the build reported image {short(image_id)}, which does not exist")
    want = (parent.attrs.get("RootFS") or {}).get("Layers") or []
    have = (made.attrs.get("RootFS") or {}).get("Layers") or []
    if have[: len(want)] != want:
        raise BuildFailed(f"{spec.task}: built image {short(image_id)} does not extend the parent {spec.parent_ref} "
                          f"({short(parent.id)}); tag not moved — was the parent retagged during the build? run again")


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def produce(
    settings: Settings, engine: Engine, task: str, ref: str, key: InputKey, make: Callable[[], str]
) -> ImageResult:
    """Make ``ref`` carry an image with ``key``: keep the current one, pull it from the stage cache, or ``make()`` it.

    ``make`` returns an untagged image ID; the tag moves only once the image's
    label is verified, and a built image is offered to the stage cache.

    Raises:
        BuildFailed: the made image lacks the key's label.
    """
    started = time.monotonic()
    existing = engine.image(ref)
    previous_size = existing.size if existing else 0
    if existing is not None and existing.labels.get(LABEL_INPUTS) == key.digest:
        log.info("%s: %s already carries the current inputs; not building", task, ref)
        keystore.save(settings.build_dir, task, key, keystore.load_source(settings.build_dir, task, key.digest))
        return ImageResult(task, ref, existing.id, key.digest, False, 0.0, existing.size, previous_size, "current")
    from pipeline.cache import stage_cache  # the registry stack (requests): only when a stage is made

    cache = stage_cache(settings, engine)
    cached = cache.fetch(task, key, ref) if cache else None
    if cached is not None:
        keystore.save(settings.build_dir, task, key, "cache")
        seconds = time.monotonic() - started
        return ImageResult(task, ref, cached.id, key.digest, True, seconds, cached.size, previous_size, "cache")
    image_id = make()
    made = engine.require(image_id, "the build reported an image that does not exist")
    if made.labels.get(LABEL_INPUTS) != key.digest:
        raise BuildFailed(f"{task}: built image {short(image_id)} lacks the {LABEL_INPUTS} label; tag not moved")
    engine.tag(image_id, ref)
    keystore.save(settings.build_dir, task, key, "built")
    if cache:
        cache.store(task, key, image_id)
    seconds = time.monotonic() - started
    log.info("%s: tagged %s (%s) in %.1f s", task, ref, short(image_id), seconds)
    return ImageResult(task, ref, image_id, key.digest, True, seconds, made.size, previous_size, "built")

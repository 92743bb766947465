"""The drift stage: compare the image's pinned specs with deployments/NAME/env-frozen/, write nothing.

Plain `doit` runs this instead of freeze, so a default run leaves the tracked
tree as it found it.  It reads the folder freeze writes (env-frozen/, in the
deployment's build context) at the floating and chilly levels, and nothing at
the frozen level, where env-frozen/ is the build's input (see stages/freeze.py): the drift (added, removed or re-pinned packages, old -> new)
is printed with the command that writes it (`doit freeze:NAME`).  The last
comparison is recorded in build/drift/NAME.json: the image ID, the sha256 of
every committed spec it was compared with, and the summary per environment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import records
from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Settings
from pipeline.stages.freeze import diff_requirements, folder, image_specs, listing, report, spec_texts
from pipeline.stages.recorded import image_and_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

KIND = "drift"
FROZEN_MODE = "frozen mode: the image was built from the committed specs"


@dataclass(frozen=True)
class DriftResult:
    deployment: str
    image_id: str
    drifted: bool
    changes: Mapping[str, str] = field(default_factory=dict)  # environment -> summary

    def values(self) -> dict[str, Any]:
        return {"image": self.image_id, "drifted": self.drifted, "changes": dict(self.changes)}


def drift_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current in frozen mode; otherwise while the image and env-frozen/ are those of the last comparison."""
    if settings.frozen:
        return Freshness(True, FROZEN_MODE)
    dep = settings.deployment(name)
    found = image_and_record(settings, engine, dep, records.record_path(settings.build_dir, KIND, name), "comparison")
    if isinstance(found, Freshness):
        return found
    image, last = found
    if last.get("image") != image.id:
        return Freshness(False, f"image changed: {short(last.get('image'))} -> {short(image.id)}")
    if (last.get("files") or {}) != listing(folder(dep)):
        return Freshness(False, f"{display(folder(dep))} changed since the last comparison")
    state = "; ".join(f"{env}: {text}" for env, text in sorted((last.get("changes") or {}).items()))
    return Freshness(True, f"compared image {short(image.id)} with {display(folder(dep))}" + (f" ({state})" if state else ""))


def drift(settings: Settings, engine: Engine, name: str) -> DriftResult:
    """Print how the image's pins differ from deployments/NAME/env-frozen/; never writes there.

    Raises:
        ImageNotFound: the mission image does not exist, or it lacks the freeze
            directory while the deployment has committed specs or sets ``freeze:``.
        PipelineError: the directory cannot be copied out of the image.
    """
    dep = settings.deployment(name)
    path = records.record_path(settings.build_dir, KIND, name)
    if settings.frozen:
        log.info("drift:%s: %s", name, FROZEN_MODE)
        return DriftResult(name, "", False)
    ref = mission_spec(settings, dep).ref
    image = engine.require(ref, f"run `doit build:{name}` first")
    target = folder(dep)
    wanted = image_specs(engine, dep, ref, KIND)
    old, new = spec_texts(target, wanted or {})
    drifted = wanted is not None and _differs(old, new)
    changes = report(f"drift:{name}", old, new) if drifted else {}
    if drifted:
        log.info("drift:%s: %s differs from the pins of the %s build; `doit freeze:%s` writes them (then commit "
                 "them)", name, display(target), settings.pins, name)
    elif wanted is not None:
        log.info("drift:%s: %s matches the image's pins", name, display(target))
    records.save(path, {"image": image.id, "files": listing(target), "ref": ref, "changes": changes})
    return DriftResult(name, image.id, drifted, changes)


def _differs(old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    return set(old) != set(new) or any(diff_requirements(old[rel], new[rel]) for rel in new)

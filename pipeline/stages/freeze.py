"""The freeze stage: copy the image's pinned specs into deployments/NAME/env-frozen/.

Per pin level (pipeline.yaml ``frozen:``; plan.FROZEN_SPECS says what each build reads):

| level    | the build reads  | freeze writes |
|----------|------------------|---------------|
| floating | environments/    | env-frozen/   |
| chilly   | env-chilly/      | env-frozen/   |
| frozen   | env-frozen/      | nothing       |

In floating and chilly mode the image's ``freeze`` directory (default
/opt/env-frozen: one sub-directory per environment with a ``pip freeze``
requirements.txt) is mirrored into the deployment's env-frozen/ (next to its
environments/, in its build context), and what changed is printed per
environment; neither build reads env-frozen/, so this never makes the image
stale.  In frozen mode the committed specs are the input of the build, so this
stage never writes.  The last freeze is recorded in
build/freeze/NAME.json: the image ID and the sha256 of every file written.

freeze writes into the deployment's tracked folder, so it runs only when asked
(`doit freeze:NAME`); plain `doit` runs drift:NAME (stages/drift.py) instead,
which compares the same specs and reports the drift without writing.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import records
from pipeline.errors import ImageNotFound, PipelineError
from pipeline.files import write_bytes
from pipeline.hashing import sha256_bytes
from pipeline.keys import short
from pipeline.plan import mission_spec
from pipeline.settings import Deployment, Settings
from pipeline.stages.recorded import image_and_record
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

KIND = "freeze"
FOLDER = "env-frozen"
DEFAULT_FREEZE_DIR = "/opt/env-frozen"
SPEC_FILE = "requirements.txt"
FROZEN_MODE = "frozen mode: keeping the committed specs"


# -- requirement diffs (pure) -------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    name: str  # as written in the file
    version: str  # the `==` version, a direct reference `@ URL`, or the specifier text ("" when unpinned)


@dataclass(frozen=True)
class SpecDiff:
    """Differences between two requirement files, keyed by canonical names."""

    added: tuple[Pin, ...] = ()
    removed: tuple[Pin, ...] = ()
    changed: tuple[tuple[str, str, str], ...] = ()  # (name, old version, new version)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """``+ name version``, ``- name version``, ``~ name old -> new``, sorted by name within each kind."""
        out = [f"+ {p.name} {p.version}".rstrip() for p in self.added]
        out += [f"- {p.name} {p.version}".rstrip() for p in self.removed]
        out += [f"~ {name} {old or '(unpinned)'} -> {new or '(unpinned)'}" for name, old, new in self.changed]
        return out

    def summary(self) -> str:
        if not self:
            return "no changes"
        parts = [(len(self.added), "added"), (len(self.removed), "removed"), (len(self.changed), "changed")]
        return ", ".join(f"{n} {what}" for n, what in parts if n)


def _logical_lines(text: str) -> Iterable[str]:
    """Lines with backslash continuations joined and comments removed."""
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.lstrip().startswith("#"):
            continue
        yield line.split(" #", 1)[0].split("\t#", 1)[0].strip()
    if pending.strip():
        yield pending.strip()


def parse_requirements(text: str) -> dict[str, Pin]:
    """Canonical name -> Pin for each requirement line.

    Blank lines, comments and option lines (``-e``, ``-r``, ``--index-url``, …) are
    skipped, and so is a line ``packaging`` cannot parse (logged).
    """
    from packaging.requirements import InvalidRequirement, Requirement  # ~20 ms: not on the no-op path
    from packaging.utils import canonicalize_name

    pins: dict[str, Pin] = {}
    for line in _logical_lines(text):
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            log.warning("skipping requirement line %r: %s", line, exc)
            continue
        pins[canonicalize_name(req.name)] = Pin(req.name, _version(req))
    return pins


def _version(req: Any) -> str:  # a packaging Requirement
    if req.url:
        return f"@ {req.url}"
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "==="):
        return specs[0].version
    return str(req.specifier)


def diff_requirements(old: str, new: str) -> SpecDiff:
    """What changed from the requirement text ``old`` to ``new``: added, removed and re-pinned packages."""
    before, after = parse_requirements(old), parse_requirements(new)
    added = tuple(after[k] for k in sorted(set(after) - set(before)))
    removed = tuple(before[k] for k in sorted(set(before) - set(after)))
    changed = tuple(
        (after[k].name, before[k].version, after[k].version)
        for k in sorted(set(before) & set(after))
        if before[k].version != after[k].version
    )
    return SpecDiff(added, removed, changed)


# -- the stage ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FreezeResult:
    deployment: str
    image_id: str
    written: bool
    frozen_mode: bool = False
    environments: tuple[str, ...] = ()
    changes: Mapping[str, str] = field(default_factory=dict)  # environment -> summary

    def values(self) -> dict[str, Any]:
        return {
            "image": self.image_id,
            "written": self.written,
            "frozen_mode": self.frozen_mode,
            "environments": list(self.environments),
        }


def folder(dep: Deployment) -> Path:
    """The deployment's env-frozen/: in its build context (``context:``, else the deployment folder)."""
    return dep.image_dir / FOLDER


def _record_path(settings: Settings, dep: Deployment) -> Path:
    return records.record_path(settings.build_dir, KIND, dep.name)


def listing(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file under ``root`` (empty when it does not exist)."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): sha256_bytes(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def freeze_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current in frozen mode; otherwise while the image and env-frozen/ are as the last freeze left them."""
    if settings.frozen:
        return Freshness(True, FROZEN_MODE)
    dep = settings.deployment(name)
    found = image_and_record(settings, engine, dep, _record_path(settings, dep), "freeze")
    if isinstance(found, Freshness):
        return found
    image, last = found
    if last.get("image") != image.id:
        return Freshness(False, f"image {short(image.id)} changed since the last freeze (was {short(last.get('image'))})")
    recorded, present = last.get("files") or {}, listing(folder(dep))
    if recorded != present:
        differ = sorted(k for k in set(recorded) | set(present) if recorded.get(k) != present.get(k))
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        return Freshness(False, f"{display(folder(dep))} changed since the last freeze: {shown}")
    return Freshness(True, f"{display(folder(dep))} holds the specs of image {short(image.id)}")


def freeze(settings: Settings, engine: Engine, name: str) -> FreezeResult:
    """Mirror the image's freeze directory into deployments/NAME/env-frozen/ and print what changed.

    Files are written atomically and only when their content changed;
    environments that are no longer in the image are removed.

    Raises:
        ImageNotFound: the mission image does not exist, or it lacks the freeze
            directory while the deployment uses frozen specs.
        PipelineError: the directory cannot be copied out of the image.
    """
    dep = settings.deployment(name)
    if settings.frozen:
        log.info("freeze:%s: %s (%s is the build's input)", name, FROZEN_MODE, display(folder(dep)))
        return FreezeResult(name, "", False, frozen_mode=True)
    ref = mission_spec(settings, dep).ref
    image = engine.require(ref, f"run `doit build:{name}` first")
    target = folder(dep)
    path = _record_path(settings, dep)
    wanted = image_specs(engine, dep, ref)
    if wanted is None:
        records.save(path, {"image": image.id, "files": {}, "ref": ref})
        return FreezeResult(name, image.id, False)
    old, new = spec_texts(target, wanted)
    changes = report(f"freeze:{name}", old, new)
    written = _mirror(target, wanted)
    records.save(path, {"image": image.id, "files": listing(target), "ref": ref})
    if written:
        log.info("freeze:%s: updated %s from the %s build; commit the new pins; frozen builds (frozen: true) "
                 "install exactly them", name, display(target), settings.pins)
    else:
        log.info("freeze:%s: %s already holds the image's specs", name, display(target))
    envs = tuple(sorted({rel.split("/", 1)[0] for rel in new}))
    return FreezeResult(name, image.id, written, environments=envs, changes=changes)


def image_specs(engine: Engine, dep: Deployment, ref: str, task: str = "freeze") -> dict[str, bytes] | None:
    """Relative path -> bytes of every file in the image's freeze directory; None when it has none (and needs none).

    Raises:
        ImageNotFound, PipelineError: as ``_copy_out``.
    """
    with tempfile.TemporaryDirectory(prefix="pipeline-freeze-") as tmp:
        source = _copy_out(engine, dep, ref, Path(tmp), task)
        if source is None:
            return None
        return {p.relative_to(source).as_posix(): p.read_bytes()
                for p in sorted(source.rglob("*")) if p.is_file() and not p.is_symlink()}


def spec_texts(target: Path, wanted: Mapping[str, bytes]) -> tuple[dict[str, str], dict[str, str]]:
    """(committed, image) requirement texts by relative path, for ``report``."""
    old = {rel: (target / rel).read_text(encoding="utf-8", errors="replace")
           for rel in listing(target) if rel.endswith("/" + SPEC_FILE)}
    new = {rel: data.decode("utf-8", errors="replace") for rel, data in wanted.items() if rel.endswith("/" + SPEC_FILE)}
    return old, new


def _copy_out(engine: Engine, dep: Deployment, ref: str, tmp: Path, task: str = "freeze") -> Path | None:
    """The freeze directory copied under ``tmp``; None when the image has none and none is expected.

    Raises:
        ImageNotFound: the directory is missing but the deployment has committed specs or sets ``freeze:``.
        PipelineError: it cannot be unpacked (e.g. a symlink pointing outside it).
    """
    import tarfile  # the engine's copy raises its errors (not imported by a no-op's check)

    where = display(dep.folder / "deployment.yaml")
    try:
        copied = engine.copy_from_image(ref, dep.freeze, tmp)
    except ImageNotFound:
        if dep.freeze == DEFAULT_FREEZE_DIR and not folder(dep).exists():
            log.info("%s:%s: image %s has no %s and %s does not exist; nothing to do",
                     task, dep.name, ref, dep.freeze, display(folder(dep)))
            return None
        raise ImageNotFound(
            f"{dep.freeze} (key 'freeze' in {where}) is not in image {ref}; "
            "make the image write its pinned specs there, or point `freeze:` at them"
        ) from None
    except tarfile.TarError as exc:
        raise PipelineError(f"cannot copy {dep.freeze} out of {ref}: {exc}") from None
    if len(copied) != 1 or not copied[0].is_dir():
        raise PipelineError(f"{dep.freeze} in {ref} is not a directory (key 'freeze' in {where})")
    return copied[0]


def report(task: str, old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Log what changed per environment (lines start with ``task``); returns environment -> one-line summary."""
    summaries: dict[str, str] = {}
    envs = sorted({rel.split("/", 1)[0] for rel in (*old, *new)})
    for env in envs:
        rel = f"{env}/{SPEC_FILE}"
        if rel not in new:
            count = len(parse_requirements(old.get(rel, "")))
            summaries[env] = f"environment removed ({count} packages)"
        elif rel not in old:
            count = len(parse_requirements(new[rel]))
            summaries[env] = f"new environment ({count} packages)"
        else:
            diff = diff_requirements(old[rel], new[rel])
            summaries[env] = diff.summary()
            log.info("%s: %s: %s", task, env, summaries[env])
            for line in diff.lines():
                log.info("    %s", line)
            continue
        log.info("%s: %s: %s", task, env, summaries[env])
    if not envs:
        log.info("%s: no environments in the image's freeze directory", task)
    return summaries


def _mirror(target: Path, wanted: Mapping[str, bytes]) -> bool:
    """Make ``target`` hold exactly ``wanted``; True when anything was written or removed."""
    changed = False
    for rel, data in wanted.items():
        changed |= write_bytes(target / rel, data)
    if target.is_dir():
        for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            rel = path.relative_to(target).as_posix()
            if path.is_symlink() or path.is_file():
                if rel not in wanted:
                    path.unlink()
                    changed = True
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
                changed = True
    elif wanted:
        changed = True
    return changed

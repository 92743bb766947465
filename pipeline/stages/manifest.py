"""The manifest stage: build/manifests/NAME.yaml, what is in a mission image, machine readable.

The image (ID, tag, size, creation time), its input key and the parts it was
computed from, the chain it was built on, the OS release, the dpkg packages
(with each binary's source package and version where they differ, as Debian's
advisories name sources) and every Python environment's packages.  Files are copied out of the image;
the Python environments are found by one container that lists the
``*.dist-info`` directories (a POSIX sh script, busybox is enough).  An image
without dpkg or without Python gets ``null`` there and a ``notes`` entry.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import containers, keystore, records
from pipeline.containers import ContainerSpec
from pipeline.errors import CommandFailed, ConfigError, PipelineError
from pipeline.files import write_text
from pipeline.hashing import sha256_bytes
from pipeline.keys import short
from pipeline.plan import LABEL_INPUTS, LABEL_NAMESPACE, chain_specs, mission_spec
from pipeline.settings import Settings
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

if TYPE_CHECKING:
    from pipeline.engine import Engine, ImageInfo

log = logging.getLogger(__name__)

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")  # the os-release(5) lookup order
DPKG_STATUS = "/var/lib/dpkg/status"
LIST_TIMEOUT = 600.0
_MARK = "dist-info "
_DONE = "pipeline-manifest: done"
# Lists every *.dist-info directory outside /proc, /sys and /dev; busybox find and sed suffice.
LIST_SCRIPT = (
    "command -v find >/dev/null 2>&1 || { echo 'pipeline-manifest: no find in the image'; exit 3; }\n"
    "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type d -name '*.dist-info' -print"
    f" 2>/dev/null | sed 's/^/{_MARK}/'\n"
    f"echo '{_DONE}'\n"
)
_SOURCE = re.compile(r"^(?P<name>[^\s(]+)(?:\s*\((?P<version>[^)\s]+)\))?\s*$")
_SITE = re.compile(r"^(?P<prefix>/.*?)/lib/python\d+(?:\.\d+)?/(?:site|dist)-packages/(?P<dist>[^/]+)\.dist-info/?$")


@dataclass(frozen=True)
class ManifestResult:
    deployment: str
    path: Path
    image_id: str
    written: bool

    def values(self) -> dict[str, Any]:
        return {"path": str(self.path), "image": self.image_id, "written": self.written}


def manifest_path(settings: Settings, name: str) -> Path:
    return settings.build_dir / "manifests" / f"{name}.yaml"


def manifest_freshness(settings: Settings, engine: Engine, name: str) -> Freshness:
    """Current while the manifest file exists and records the tagged image's ID, tag and mode."""
    ref = mission_spec(settings, settings.deployment(name)).ref
    image = engine.image(ref)
    if image is None:
        return Freshness(False, f"image {ref} is missing")
    path = manifest_path(settings, name)
    try:
        raw = path.read_bytes()
    except OSError:
        return Freshness(False, f"{display(path)} is missing or unreadable")
    data = summary = _summary(settings, name, raw)
    if data is None:  # the file changed since it was summarised: read it (the only case that imports PyYAML)
        import yaml

        try:
            data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # nosec B506 - safe loader
        except yaml.YAMLError:
            return Freshness(False, f"{display(path)} is missing or unreadable")
    recorded = (data.get("image") or {}) if isinstance(data, dict) else {}
    if not isinstance(recorded, dict) or recorded.get("id") != image.id:
        return Freshness(False, f"image {short(image.id)} changed since {display(path)} was written")
    if recorded.get("tag") != ref or data.get("frozen") != settings.frozen:
        return Freshness(False, f"{display(path)} was written for another tag or frozen mode")
    if data.get("dpkg") and "dpkg_details" not in data:
        return Freshness(False, f"{display(path)} predates the dpkg_details section (arch, source package)")
    if summary is None:  # parsed: remember what was read, so the next check only hashes the file
        _save_summary(settings, name, raw, recorded, data)
    return Freshness(True, f"{display(path)} describes image {short(image.id)}")


def _summary_path(settings: Settings, name: str) -> Path:
    return records.record_path(settings.build_dir, "manifest-state", name)


def _summary(settings: Settings, name: str, raw: bytes) -> dict[str, Any] | None:
    """What the freshness check reads of the manifest, recorded when it was written, while its bytes are the same.

    (Parsing the whole manifest costs milliseconds; its sha256 costs microseconds.)
    """
    state = records.load(_summary_path(settings, name))
    if state is None or state.get("sha256") != sha256_bytes(raw):
        return None
    summary = state.get("summary")
    return summary if isinstance(summary, dict) else None


def _save_summary(settings: Settings, name: str, raw: bytes, image: dict[str, Any], data: dict[str, Any]) -> None:
    summary = {"image": {"id": image.get("id"), "tag": image.get("tag")}, "frozen": data.get("frozen"),
               "dpkg": bool(data.get("dpkg"))}
    if "dpkg_details" in data:
        summary["dpkg_details"] = True
    records.save(_summary_path(settings, name), {"sha256": sha256_bytes(raw), "summary": summary})


def write_manifest(settings: Settings, engine: Engine, name: str) -> ManifestResult:
    """Describe the mission image in build/manifests/NAME.yaml (written atomically, only when changed).

    Raises:
        ImageNotFound: the mission image does not exist.
        CommandFailed: docker could not run the listing container.
        EngineUnavailable: the daemon went away.
    """
    dep = settings.deployment(name)
    spec = mission_spec(settings, dep)
    image = engine.require(spec.ref, f"run `doit build:{name}` first")
    notes: list[str] = []
    digest = image.labels.get(LABEL_INPUTS)
    parts = keystore.load_parts(settings.build_dir, spec.task, digest) if digest else None
    if parts is None:
        notes.append(f"inputs: no record of the key's parts in {display(settings.build_dir / 'keys')}/"
                     f"{spec.task.replace(':', '-')}.json")
    with tempfile.TemporaryDirectory(prefix="pipeline-manifest-") as tmp:
        os_release = _os_release(engine, spec.ref, Path(tmp), notes)
        dpkg, dpkg_details = _dpkg(engine, spec.ref, Path(tmp), notes)
    python = _python(settings, spec.ref, notes)
    created = image.attrs.get("Created")
    document: dict[str, Any] = {
        "deployment": name,
        "image": {"id": image.id, "tag": spec.ref, "size": image.size, "created": created},
        "environment": settings.environment,
        "frozen": settings.frozen,
        "inputs": {"key": digest, "parts": parts},
        "parents": _parents(settings, engine, notes),
        "os_release": os_release,
        "dpkg": dpkg,
        "dpkg_details": dpkg_details,
        "python": python,
        "notes": notes,
    }
    import yaml

    path = manifest_path(settings, name)
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=120)
    written = write_text(path, text)
    _save_summary(settings, name, text.encode("utf-8"), document["image"], document)
    counts = f"{len(dpkg) if dpkg else 0} dpkg packages, {len(python) if python else 0} Python environments"
    log.info("manifest:%s: %s %s (%s)", name, "wrote" if written else "kept", display(path), counts)
    for note in notes:
        log.info("manifest:%s: note: %s", name, note)
    return ManifestResult(name, path, image.id, written)


def _parents(settings: Settings, engine: Engine, notes: list[str]) -> list[dict[str, Any]]:
    """The chain below the mission image, nearest first, down to the root."""
    chain = [(spec.task, spec.ref) for spec in reversed(chain_specs(settings))] + [("root", settings.root_ref)]
    out: list[dict[str, Any]] = []
    for stage, ref in chain:
        info: ImageInfo | None = engine.image(ref)
        if info is None:
            notes.append(f"parents: {ref} ({stage}) does not exist")
        out.append({"stage": stage, "tag": ref, "id": info.id if info else None})
    return out


def _copy_text(engine: Engine, ref: str, path: str, tmp: Path) -> str | None:
    """The text of one file in the image, or None when it is absent or not a plain file."""
    import tarfile  # the engine's copy raises its errors (not imported by a no-op's check)

    dest = tmp / path.strip("/").replace("/", "_")
    try:
        copied = engine.copy_from_image(ref, path, dest)
    except (PipelineError, tarfile.TarError) as exc:
        # ImageNotFound for a missing path; a TarError for a symlink that points outside it.
        log.debug("%s not copied out of %s: %s", path, ref, exc)
        return None
    if len(copied) != 1 or not copied[0].is_file() or copied[0].is_symlink():
        return None
    return copied[0].read_text(encoding="utf-8", errors="replace")


def _os_release(engine: Engine, ref: str, tmp: Path, notes: list[str]) -> dict[str, str] | None:
    for path in OS_RELEASE:
        text = _copy_text(engine, ref, path, tmp)
        if text is not None:
            return parse_os_release(text)
    notes.append(f"os_release: neither {' nor '.join(OS_RELEASE)} is in the image")
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines (values optionally quoted, as os-release(5) allows) to a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key.strip()] = value
    return out


def _dpkg(engine: Engine, ref: str, tmp: Path, notes: list[str]) -> tuple[dict[str, str] | None, dict[str, Any] | None]:
    text = _copy_text(engine, ref, DPKG_STATUS, tmp)
    if text is None:
        notes.append(f"dpkg: no {DPKG_STATUS} in the image (not a dpkg-based system)")
        return None, None
    return parse_dpkg_status(text), parse_dpkg_details(text)


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Package -> version of each installed package (``Status: … ok installed``) in a dpkg status file."""
    out: dict[str, str] = {}
    for paragraph in _paragraphs(text):
        status = paragraph.get("Status", "").split()
        if len(status) == 3 and status[1] == "ok" and status[2] == "installed" and "Package" in paragraph:
            out[paragraph["Package"]] = paragraph.get("Version", "")
    return dict(sorted(out.items()))


def parse_dpkg_details(text: str) -> dict[str, dict[str, str]]:
    """Package -> {arch, source, source_version} of each installed package (an SBOM's purls, the scan's sources).

    dpkg leaves ``Source:`` out when it equals the package name, and gives it its own
    version in parentheses when that differs from the binary's (a binNMU).
    """
    out: dict[str, dict[str, str]] = {}
    for paragraph in _paragraphs(text):
        status = paragraph.get("Status", "").split()
        if not (len(status) == 3 and status[1:] == ["ok", "installed"] and "Package" in paragraph):
            continue
        match = _SOURCE.match(paragraph.get("Source", ""))
        name = match["name"] if match else paragraph["Package"]
        version = (match["version"] if match else None) or paragraph.get("Version", "")
        out[paragraph["Package"]] = {"arch": paragraph.get("Architecture", ""), "source": name,
                                     "source_version": version}
    return dict(sorted(out.items()))


def dpkg_sources(details: dict[str, dict[str, str]], versions: dict[str, str]) -> dict[str, dict[str, str]]:
    """Binary -> {source, version} for each package whose source name or version differs from its own."""
    out = {}
    for pkg, d in details.items():
        if d.get("source") != pkg or d.get("source_version") != versions.get(pkg):
            out[pkg] = {"source": d.get("source", pkg), "version": d.get("source_version", "")}
    return out


def parse_dpkg_sources(text: str) -> dict[str, dict[str, str]]:
    """:func:`dpkg_sources` of a dpkg status file."""
    return dpkg_sources(parse_dpkg_details(text), parse_dpkg_status(text))


def _paragraphs(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif line[0] in " \t":
            continue  # a continuation line (Description, Conffiles): not needed here
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    if fields:
        yield fields


def _python(settings: Settings, ref: str, notes: list[str]) -> dict[str, dict[str, str]] | None:
    """Env prefix -> {canonical name: version}, from one container listing the dist-info directories."""
    spec = ContainerSpec(
        image=ref,
        command=("sh", "-c", LIST_SCRIPT),
        name=containers.unique_name(f"{settings.namespace}-manifest"),
        user="0",
        entrypoint="",
        labels={LABEL_NAMESPACE: settings.namespace},
    )
    try:
        result = containers.run_captured(spec, timeout=LIST_TIMEOUT, stream=False)
    except CommandFailed as exc:
        raise CommandFailed(f"listing the Python environments in {ref} failed: {exc}") from None
    if _DONE not in result.output:
        problem = containers.docker_exit_problem(result) or f"exit {result.returncode}: {result.tail(2)}"
        notes.append(f"python: could not list the Python environments (sh -c in the image): {problem}")
        return None
    envs = parse_dist_infos(line[len(_MARK):] for line in result.output.splitlines() if line.startswith(_MARK))
    if not envs:
        notes.append("python: no Python environments (no */lib/pythonX.Y/site-packages/*.dist-info) in the image")
        return None
    return envs


def parse_dist_infos(paths: Iterable[str]) -> dict[str, dict[str, str]]:
    """Group ``PREFIX/lib/pythonX.Y/{site,dist}-packages/NAME-VERSION.dist-info`` paths by PREFIX.

    Names are canonicalized; paths elsewhere (vendored copies, stray directories) are skipped.
    """
    from packaging.utils import canonicalize_name  # not on the no-op path

    envs: dict[str, dict[str, str]] = {}
    for path in paths:
        match = _SITE.match(path.strip())
        if not match or "-" not in match["dist"]:
            continue
        name, version = match["dist"].rsplit("-", 1)
        envs.setdefault(match["prefix"], {})[canonicalize_name(name)] = version
    return {prefix: dict(sorted(pkgs.items())) for prefix, pkgs in sorted(envs.items())}


def load_inventory(settings: Settings, name: str, image_id: str) -> dict[str, Any]:
    """The manifest stage's record of this image.

    Raises:
        ConfigError: there is none, or it describes another image.
    """
    import yaml

    path = manifest_path(settings, name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"no manifest {display(path)}; run `doit manifest:{name}` first") from None
    recorded = (data.get("image") or {}).get("id")
    if recorded != image_id:
        raise ConfigError(f"{display(path)} describes {short(recorded)}, not the current image {short(image_id)}; "
                          f"run `doit manifest:{name}`")
    if data.get("dpkg") and "dpkg_details" not in data:
        raise ConfigError(f"{display(path)} has no dpkg_details (written by an older pipeline); "
                          f"run `doit manifest:{name}`")
    return dict(data)

"""Parsers for the registry, run, tags and release sections of the configuration."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import tagging
from pipeline.config_sign import key_files
from pipeline.section import Section, parse_bool
from pipeline.settings import PIN_LEVELS, Cache, Registry, Release, Scan, Secrets, Sscan, Tags, UbuntuCve

REGISTRY_KINDS = ("generic", "ecr")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def parse_registry(sec: Section) -> Registry | None:
    """``registry:``; None when the section is absent or empty."""
    if not sec.data:
        return None
    kind = sec.choice("kind", REGISTRY_KINDS, "generic")
    common = {
        "retries": int(sec.number("retries", 4, integer=True)),
        "backoff": float(sec.number("backoff", 1.0)),
    }
    if kind == "generic":
        sec.reject_unknown(["kind", "host", "insecure", "username_env", "password_env", "retries", "backoff"])
        return Registry(
            kind=kind,
            host=sec.req("host"),
            insecure=sec.bool("insecure", False),
            username_env=_env_name(sec, "username_env"),
            password_env=_env_name(sec, "password_env"),
            **common,
        )
    sec.reject_unknown(
        ["kind", "host", "account", "region", "role_arn", "endpoint_url", "sts_endpoint_url", "retries", "backoff"]
    )
    account, region = sec.req("account"), sec.req("region")
    return Registry(
        kind=kind,
        host=sec.str("host") or f"{account}.dkr.ecr.{region}.amazonaws.com",
        account=account,
        region=region,
        role_arn=sec.str("role_arn"),
        endpoint_url=sec.str("endpoint_url"),
        sts_endpoint_url=sec.str("sts_endpoint_url"),
        **common,
    )


def _env_name(sec: Section, key: str) -> str | None:
    name = sec.str(key)
    if name is not None and not _ENV_NAME.match(name):
        raise sec.error(f"key '{sec.dotted(key)}' must name an environment variable (e.g. REGISTRY_USER), not {name!r}", key)
    return name


def parse_run_args(sec: Section) -> tuple[str, ...]:
    """``run: {args: [...]}``: extra docker run flags (mounts, env, ports) for containers from the images."""
    run = sec.section("run")
    run.reject_unknown(["args"])
    args = run.raw("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
        raise run.error("key 'run.args' must be a list of docker run arguments, e.g. [-e, FOO=1, -v, /data:/data]", "args")
    return tuple(str(a) for a in args)


def parse_tags(sec: Section) -> Tags:
    """``tags: {build: ..., promoted: ...}``, templates with ``{environment}`` (``extra``: see parse_extra_tags)."""
    sec.reject_unknown(["build", "promoted", "extra"])
    defaults = Tags()
    values = {}
    for key in ("build", "promoted"):
        template = sec.str(key, getattr(defaults, key))
        assert template is not None
        sample = template.replace("{environment}", "sandbox")
        if not _TAG.match(sample) or "{" in sample:
            raise sec.error(
                f"key '{sec.dotted(key)}' is {template!r}; a tag is letters, digits, '_', '.', '-' "
                "(up to 128), with {environment} as the only placeholder",
                key,
            )
        values[key] = template
    if values["build"] == values["promoted"]:
        raise sec.error("keys 'tags.build' and 'tags.promoted' must differ", "promoted")
    return Tags(**values)


def parse_release(sec: Section) -> Release:
    sec.reject_unknown(["branch", "push_tag"])
    return Release(branch=sec.str("branch", "main") or "main", push_tag=sec.bool("push_tag", True))


SEVERITY_NAMES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
SCAN_BACKENDS = ("auto", "ecr", "osv")


def parse_scan(sec: Section, base: Path, load: Callable[[Path], Any] | None = None) -> Scan:
    """``scan:`` in pipeline.yaml: backend, OSV database, policy, ignore file, Ubuntu CVE status.

    ``load`` parses the ignore file (default: :func:`pipeline.yamlparse.load_yaml`).
    """
    sec.reject_unknown(["backend", "osv", "min_severity", "fail_on", "ignore", "timeout", "poll", "max_age", "ubuntu",
                        "require_inventory", "ecr"])
    osv = sec.str("osv")
    if osv and not osv.startswith(("http://", "https://")):
        path = Path(osv) if Path(osv).is_absolute() else (base / osv).resolve()
        if not path.is_dir():
            raise sec.error(f"key 'scan.osv': directory {path} does not exist (a folder of OSV JSON files)", "osv")
        osv = str(path)
    fail_on = sec.raw("fail_on", ["CRITICAL", "HIGH"])
    if isinstance(fail_on, str):
        fail_on = [fail_on]
    if not isinstance(fail_on, list) or any(str(f).upper() not in SEVERITY_NAMES for f in fail_on):
        raise sec.error(f"key 'scan.fail_on' must be a list of: {', '.join(SEVERITY_NAMES)}", "fail_on")
    ubuntu = sec.section("ubuntu")
    ubuntu.reject_unknown(["release", "base_url", "cache_ttl", "parallel", "timeout"])
    ecr = sec.section("ecr")
    ecr.reject_unknown(["allow_tag_fallback"])
    ignore = sec.file("ignore", base, required=False)
    if ignore is not None:
        from pipeline.findings.policy import load_ignores

        load_ignores(ignore, load=load)  # a bad entry is a configuration error, found before any task runs (exit 3)
    return Scan(
        backend=sec.choice("backend", SCAN_BACKENDS, "auto"),
        osv=osv,
        min_severity=sec.choice("min_severity", SEVERITY_NAMES, "MEDIUM"),
        fail_on=tuple(str(f).upper() for f in fail_on),
        ignore=ignore,
        timeout=float(sec.number("timeout", 1800.0)),
        poll=float(sec.number("poll", 5.0)),
        max_age=float(sec.number("max_age", 86400.0)),
        ubuntu=UbuntuCve(
            release=ubuntu.req("release"),
            base_url=ubuntu.str("base_url", UbuntuCve.base_url) or UbuntuCve.base_url,
            cache_ttl=float(ubuntu.number("cache_ttl", 86400.0)),
            parallel=int(ubuntu.number("parallel", 8, integer=True, minimum=1)),
            timeout=float(ubuntu.number("timeout", 10.0)),
        ) if ubuntu.data else None,
        require_inventory=sec.bool("require_inventory", True),
        allow_tag_fallback=ecr.bool("allow_tag_fallback", False),
    )


def parse_sscan(sec: Section, base: Path) -> Sscan:
    """``sscan:`` in pipeline.yaml: the source scanners (pip-audit on/off, offline OSV, ignore files, timeout)."""
    sec.reject_unknown(["pip_audit", "osv", "ignore", "timeout"])
    osv = None
    if sec.has("osv"):
        value = sec.req("osv")
        osv = Path(value) if Path(value).is_absolute() else (base / value).resolve()
        if not (osv.is_dir() or (osv.is_file() and osv.suffix == ".zip")):
            raise sec.error(
                f"key '{sec.dotted('osv')}': {osv} is neither a directory nor a .zip of OSV JSON files", "osv"
            )
    ignore = sec.raw("ignore")
    names = [ignore] if isinstance(ignore, str) else ignore if ignore is not None else []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise sec.error(f"key '{sec.dotted('ignore')}' must be a file or a list of files (YAML ignore lists)", "ignore")
    files = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else (base / name).resolve()
        if not path.is_file():
            raise sec.error(f"key '{sec.dotted('ignore')}': file {path} does not exist", "ignore")
        files.append(path)
    return Sscan(
        pip_audit=sec.bool("pip_audit", True),
        osv=osv,
        ignore=tuple(files),
        timeout=float(sec.number("timeout", 600.0)),
    )


_URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", re.IGNORECASE)


def parse_secrets(sec: Section) -> Secrets | None:
    """``secrets:`` in deployment.yaml: the git repository of the sops-encrypted secrets; None when absent."""
    if not sec.data:
        return None
    sec.reject_unknown(["repo", "role_arn", "sts_endpoint_url", "region"])
    repo = sec.req("repo")
    if _URL_CREDENTIALS.match(repo):
        raise sec.error(
            f"key '{sec.dotted('repo')}' embeds a password in the URL; remove it and use a git credential helper "
            "(e.g. the CodeCommit helper) instead",
            "repo",
        )
    return Secrets(
        repo=repo,
        role_arn=sec.str("role_arn"),
        sts_endpoint_url=sec.str("sts_endpoint_url"),
        region=sec.str("region"),
    )


_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def parse_cache(sec: Section, base: Path) -> Cache | None:
    """``cache: {repo, pull, push, trust, connect_timeout, timeout}``: off unless given."""
    if not sec.data:
        return None
    sec.reject_unknown(["repo", "pull", "push", "trust", "connect_timeout", "timeout"])
    repo = sec.req("repo")
    if not _REPO.match(repo):
        raise sec.error(f"key 'cache.repo' is {repo!r}; a repository name is lowercase letters, digits, '.', '_', '-', '/'", "repo")
    trust = key_files(sec, "trust", base)
    return Cache(repo=repo, pull=sec.bool("pull", True), push=sec.bool("push", True), trust=trust,
                 connect_timeout=sec.number("connect_timeout", 3.0, minimum=0.1),
                 timeout=sec.number("timeout", 10.0, minimum=0.1))


# -- issue 17: the knobs of repositories coming from the old scripts ---------------------------------

_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# USE_FROZEN values of the old scripts, and the words accepted for each level.
_PIN_WORDS = {"chilly": "chilly", "2": "chilly", "floating": "floating", "frozen": "frozen"}
_SHARING = ("shared", "private", "locked")


def pin_level(value: object) -> str | None:
    """``frozen:`` / ``frozen=`` to a pin level: true/1 frozen, false/0 floating, chilly/2 chilly; None if neither."""
    if isinstance(value, bool):
        return "frozen" if value else "floating"
    text = str(value).strip().lower()
    if text in _PIN_WORDS:
        return _PIN_WORDS[text]
    parsed = parse_bool(text)
    return None if parsed is None else ("frozen" if parsed else "floating")


def parse_pins(sec: Section) -> str:
    """``frozen: true | false | chilly`` in pipeline.yaml (default false: floating)."""
    raw = sec.raw("frozen")
    if raw is None:
        return "floating"
    level = pin_level(raw)
    if level is None or level not in PIN_LEVELS:
        raise sec.error(f"key 'frozen' must be true or false (or chilly), not {raw!r}", "frozen")
    return level


def parse_arg_name(sec: Section, key: str, default: str = "BASE_IMAGE") -> str:
    """An ARG name, such as ``base_arg: BASE_CONTAINER``."""
    name = sec.str(key, default)
    assert name is not None
    if not _ARG_NAME.match(name):
        raise sec.error(f"key '{sec.dotted(key)}' is {name!r}; name the Dockerfile ARG its FROM uses, "
                        "e.g. BASE_CONTAINER", key)
    return name


def parse_build_args(sec: Section, reserved: tuple[str, ...]) -> dict[str, str]:
    """``build_args: {NAME: value}``; the args the pipeline sets itself are refused."""
    build_args = sec.string_map("build_args")
    for name in reserved:
        if name in build_args:
            raise sec.section("build_args").error(
                f"key '{sec.dotted('build_args')}.{name}' is set by the pipeline; remove it", name)
    return build_args


def parse_extra_tags(sec: Section, key: str) -> tuple[str, ...]:
    """A list of extra-tag templates (see pipeline.tagging)."""
    raw = sec.raw(key)
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
        raise sec.error(f"key '{sec.dotted(key)}' must be a list of tag templates, e.g. ['{{environment}}-{{commit}}']",
                        key)
    for template in items:
        why = tagging.problem(template.strip())
        if why:
            raise sec.error(f"key '{sec.dotted(key)}': tag template {template!r}: {why}", key)
    return tuple(t.strip() for t in items)


def parse_cache_mounts(builder: Section) -> tuple[str, ...] | None:
    """``builder.cache_mounts``: absent (the default mounts), false/off (none), or a list of
    ``{target, id, uid, gid, sharing}``; rendered as ``--mount=type=cache,...`` flags."""
    if not builder.has("cache_mounts"):
        return None
    raw = builder.raw("cache_mounts")
    if raw is False or (isinstance(raw, str) and parse_bool(raw) is False) or raw == []:
        return ()
    if not isinstance(raw, list):
        raise builder.error("key 'builder.cache_mounts' must be false (no mounts) or a list of "
                            "{target, id, uid, gid, sharing}", "cache_mounts")
    mounts = []
    for item in builder.items("cache_mounts"):
        item.reject_unknown(["target", "id", "uid", "gid", "mode", "sharing"])
        target = item.req("target")
        if not target.startswith("/") or "," in target:
            raise item.error(f"key '{item.dotted('target')}' must be an absolute path without commas, "
                             f"not {target!r}", "target")
        flag = f"--mount=type=cache,target={target}"
        if item.has("id"):
            ident = item.req("id")
            if "," in ident or "=" in ident:
                raise item.error(f"key '{item.dotted('id')}' must not hold ',' or '='", "id")
            flag += f",id={ident}"
        for key in ("uid", "gid"):
            if item.has(key):
                flag += f",{key}={int(item.number(key, 0, integer=True))}"
        if item.has("mode"):
            mode = item.req("mode")
            if not re.match(r"^0?[0-7]{3,4}$", mode):
                raise item.error(f"key '{item.dotted('mode')}' must be an octal mode such as 0755", "mode")
            flag += f",mode={mode}"
        flag += f",sharing={item.choice('sharing', _SHARING, 'locked')}"
        mounts.append(flag)
    return tuple(mounts)

"""Parsers for the registry, run, tags and release sections of the configuration."""

from __future__ import annotations

import re

from pipeline.section import Section
from pipeline.settings import Registry, Release, Tags

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
    """``tags: {build: ..., promoted: ...}``, templates with ``{environment}``."""
    sec.reject_unknown(["build", "promoted"])
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

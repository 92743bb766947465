"""Task generators for the supply-chain stages: sbom:NAME, attest:NAME, verify:NAME and sign_keygen.

The stage modules are imported inside the actions and checks: their libraries
(cyclonedx, spdx-tools, securesystemslib) are not light, and a doit start that
does not run these stages must not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Deployment
from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


@dataclass(frozen=True)
class KeygenResult:
    private: str
    public: str
    keyid: str

    def values(self) -> dict[str, Any]:
        return {"private": self.private, "public": self.public, "keyid": self.keyid}


# -- actions -------------------------------------------------------------------------------------

@stage_action(lambda name: f"sbom:{name}")
def sbom_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.sbom import write_sbom

    return write_sbom(ctx.settings, ctx.engine, name)


@stage_action(lambda name: f"attest:{name}")
def attest_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.attest import attest

    return attest(ctx.settings, ctx.engine, name)


@stage_action(lambda name, **_: f"verify:{name}")
def verify_action(ctx: Context, name: str, reference: str = "") -> Any:
    from pipeline.stages.verify import verify

    return verify(ctx.settings, ctx.engine, ctx.hasher, name, reference or None)


@stage_action(lambda **_: "sign_keygen")
def keygen_action(ctx: Context, out: str = "", kind: str = "ecdsa") -> Any:
    import logging
    import os

    from pipeline import signing
    from pipeline.config_sign import is_env_key

    sign = ctx.settings.sign
    if not out:
        if not sign.key or is_env_key(sign.key):
            raise ConfigError("sign_keygen: say where to write the private key: doit sign_keygen --out PATH "
                              "(sign.key in pipeline.yaml is not a file path)")
        out = sign.key
    passphrase = None
    if sign.passphrase_env:
        value = os.environ.get(sign.passphrase_env)
        if not value:
            raise ConfigError(f"sign_keygen: sign.passphrase_env names {sign.passphrase_env}, which is not set; "
                              "export the passphrase to encrypt the key with, or remove sign.passphrase_env")
        passphrase = value.encode()
    path = Path(out).expanduser()
    public, keyid = signing.keygen(path, kind, passphrase, [ctx.settings.build_dir, ctx.settings.deployments_dir])
    log = logging.getLogger(__name__)
    log.info("sign_keygen: wrote the private key %s (mode 0600%s) and the public key %s (%s, key id %s)",
             path.resolve(), ", encrypted" if passphrase else "", public, kind, keyid[:12])
    log.info("sign_keygen: give the public key to verifiers: sign.public_keys (and cache.trust for cache entries)")
    return KeygenResult(str(path.resolve()), str(public), keyid)


# -- checks --------------------------------------------------------------------------------------

def _sbom_fresh(ctx: Context, name: str) -> Any:
    from pipeline.stages.sbom import sbom_freshness

    return sbom_freshness(ctx.settings, ctx.engine, name)


def _attest_fresh(ctx: Context, name: str) -> Any:
    from pipeline.stages.attest import attest_freshness

    return attest_freshness(ctx.settings, ctx.engine, name)


def _verify_fresh(ctx: Context, name: str, reference: str = "") -> Any:
    from pipeline.stages.verify import verify_freshness

    return verify_freshness(ctx.settings, ctx.engine, ctx.hasher, name, reference)


# -- generators ----------------------------------------------------------------------------------

def sbom_tasks() -> Iterator[TaskDict]:
    return per_deployment("sbom", "write every selected deployment's SBOM (CycloneDX and SPDX)", lambda ctx, dep: {
        "doc": f"write build/sbom/{dep.name}.cdx.json (CycloneDX 1.6) and .spdx.json (SPDX 2.3) from the manifest",
        "actions": [(sbom_action, [dep.name])],
        "task_dep": [f"manifest:{dep.name}"],
        "uptodate": [StageCheck(f"sbom:{dep.name}", _sbom_fresh, dep.name)],
    })


def attest_tasks() -> Iterator[TaskDict]:
    return per_deployment("attest", "sign and attach every selected image's provenance and SBOM", lambda ctx, dep: {
        "doc": f"sign {dep.name}'s SLSA provenance and SBOM with sign.key and attach them to the pushed digest",
        "actions": [(attest_action, [dep.name])],
        "task_dep": [f"push:{dep.name}", f"sbom:{dep.name}"],
        "uptodate": [StageCheck(f"attest:{dep.name}", _attest_fresh, dep.name)],
    })


def verify_tasks() -> Iterator[TaskDict]:
    params = [{"name": "reference", "long": "ref", "default": "", "help": "tag or sha256 digest (default: build tag)"}]

    def make(ctx: Context, dep: Deployment) -> TaskDict:
        # A signing checkout (CI) attests first; a verifier (no sign.key) only reads the registry.
        return {
            "doc": f"verify {dep.name}'s signed provenance and compare it with this checkout (--ref TAG|sha256:…)",
            "actions": [(verify_action, [dep.name])],
            "task_dep": [f"attest:{dep.name}"] if ctx.settings.sign.key else [],
            "params": params,
            "uptodate": [StageCheck(f"verify:{dep.name}", _verify_fresh, dep.name, with_options=True)],
        }

    return per_deployment("verify", "verify every selected image's signed provenance", make)


def keygen_task() -> TaskDict:
    context.get()
    return {
        "doc": "write a signing key pair: the private key (mode 0600) at --out (default sign.key), the public at .pub",
        "actions": [(keygen_action, [])],
        "params": [
            {"name": "out", "long": "out", "default": "", "help": "private key file (default: sign.key)"},
            {"name": "kind", "long": "type", "default": "ecdsa", "help": "ecdsa (P-256) or ed25519"},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }


def supply_chain_deps(ctx: Context, name: str) -> list[str]:
    """image_all's stages between push and promote: sbom, and with sign.key attest and verify.

    doit does not run a task_dep list in order: the order comes from the stages' own
    dependencies (attest needs push and sbom, verify needs attest, promote needs verify).
    """
    return [f"sbom:{name}"] + ([f"attest:{name}", f"verify:{name}"] if ctx.settings.sign.key else [])

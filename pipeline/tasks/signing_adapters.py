"""Adapters for the supply-chain stages whose options need a word of translation (rows in table.py).

sbom and attest need none: their rows name the stage functions.  The stage modules are
imported inside the adapters: their libraries (cyclonedx, spdx-tools, securesystemslib)
are not light, and a doit start that does not run these stages must not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.tasks.context import Context


@dataclass(frozen=True)
class KeygenResult:
    private: str
    public: str
    keyid: str

    def values(self) -> dict[str, Any]:
        return {"private": self.private, "public": self.public, "keyid": self.keyid}


def verify_action(ctx: Context, name: str, reference: str = "") -> Any:
    from pipeline.stages.verify import verify

    return verify(ctx.settings, ctx.engine, ctx.hasher, name, reference or None)


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

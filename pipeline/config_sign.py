"""``sign:`` in pipeline.yaml and the public-key lists (``sign.public_keys``, ``cache.trust``).

Only the form is checked here; the keys are parsed (with the cryptography
libraries) when a stage signs or verifies, so loading the configuration stays cheap.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.section import Section
from pipeline.settings import Sign

# An all-capitals identifier names an environment variable holding the PEM text; anything else is a path.
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_ANY_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def key_files(sec: Section, key: str, base: Path) -> tuple[Path, ...]:
    """A list of existing public-key files (relative to ``base``), e.g. ``cache.trust``."""
    value = sec.raw(key)
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise sec.error(f"key '{sec.dotted(key)}' must be a list of public key files (PEM)", key)
    out = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else (base / name).resolve()
        if not path.is_file():
            raise sec.error(f"key '{sec.dotted(key)}': public key file {path} does not exist; "
                            "create one with `doit sign_keygen --out PATH`", key)
        out.append(path)
    return tuple(out)


def is_env_key(value: str) -> bool:
    return bool(ENV_NAME.match(value))


def parse_sign(sec: Section, base: Path) -> Sign:
    """``sign: {key, passphrase_env, public_keys, required}``; all optional.

    A private key file must live outside ``deployments/`` and ``build/``: from there a
    COPY could put it into an image, or a CI cache could keep it.
    """
    sec.reject_unknown(["key", "passphrase_env", "public_keys", "required"])
    key = sec.str("key")
    if key is not None and not is_env_key(key):
        path = Path(key) if Path(key).is_absolute() else (base / key).resolve()
        for inside, what in ((base, "deployments/"), (base.parent / "build", "build/")):
            if path.is_relative_to(inside.resolve()):
                raise sec.error(f"key 'sign.key': {path} is inside {what}, where a COPY or a cache could pick "
                                "the private key up; keep it outside the project (or name an environment variable)",
                                "key")
        key = str(path)
    passphrase = sec.str("passphrase_env")
    if passphrase is not None and not _ANY_ENV.match(passphrase):
        raise sec.error(f"key 'sign.passphrase_env' must name an environment variable, not {passphrase!r}",
                        "passphrase_env")
    public_keys = key_files(sec, "public_keys", base)
    required = sec.bool("required", False)
    if required and not public_keys:
        raise sec.error("key 'sign.required' is true but 'sign.public_keys' lists no key to verify with", "required")
    return Sign(key=key, passphrase_env=passphrase, public_keys=public_keys, required=required)

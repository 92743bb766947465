"""Keys and DSSE envelopes: sign in-toto statements, open them against trusted public keys.

securesystemslib does the DSSE encoding (PAE) and the signatures; pyca/cryptography
reads and writes the PEM files.  Both are imported inside the functions, so
that loading the pipeline (every doit start) does not pay for them.

Private keys come from ``sign.key``: a PEM file, or an environment variable
holding the PEM text; an encrypted key's passphrase from ``sign.passphrase_env``.
Neither is ever logged, put on a command line or written under build/.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config_sign import is_env_key
from pipeline.errors import ConfigError, PipelineError, VerificationFailed
from pipeline.settings import Sign

log = logging.getLogger(__name__)

PAYLOAD_TYPE = "application/vnd.in-toto+json"
KEY_TYPES = ("ecdsa", "ed25519")


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key: where it came from, and securesystemslib's key object."""

    source: str
    keyid: str
    keytype: str
    key: Any  # securesystemslib.signer.SSlibKey

    @property
    def label(self) -> str:
        return f"{self.keytype} key {self.keyid[:12]} ({self.source})"


@dataclass(frozen=True)
class Opened:
    """An envelope whose signature verified: the statement and the key that signed it."""

    statement: dict[str, Any]
    signer: PublicKey


def _read_pem(sign: Sign) -> tuple[bytes, str]:
    if not sign.key:
        raise ConfigError("sign.key is not set in pipeline.yaml; give a PEM file path or the name of an environment "
                          "variable holding the private key (create one with `doit sign_keygen --out PATH`)")
    if is_env_key(sign.key):
        text = os.environ.get(sign.key)
        if not text:
            raise ConfigError(f"sign.key names environment variable {sign.key}, which is not set; export it "
                              "(the PEM text of the private key)")
        return text.encode(), f"${sign.key}"
    try:
        return Path(sign.key).read_bytes(), sign.key
    except OSError as exc:
        raise ConfigError(f"sign.key: cannot read {sign.key}: {exc.strerror}; create it with "
                          f"`doit sign_keygen --out {sign.key}` or fix the path") from None


def _passphrase(sign: Sign) -> bytes | None:
    if not sign.passphrase_env:
        return None
    value = os.environ.get(sign.passphrase_env)
    if not value:
        raise ConfigError(f"sign.passphrase_env names {sign.passphrase_env}, which is not set; export the passphrase")
    return value.encode()


def load_signer(sign: Sign) -> Any:
    """The securesystemslib CryptoSigner for ``sign.key`` (ECDSA P-256 or Ed25519).

    Raises:
        ConfigError: no key configured, unreadable, wrong passphrase or an unsupported key type.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    data, where = _read_pem(sign)
    try:
        private = load_pem_private_key(data, password=_passphrase(sign))
    except TypeError:
        raise ConfigError(f"sign.key {where} is encrypted; set sign.passphrase_env to the variable holding its "
                          "passphrase") from None
    except ValueError:
        # cryptography says "Bad decrypt" or "Could not deserialize"; its text may quote the input: not shown.
        raise ConfigError(f"sign.key {where}: not a readable PEM private key, or the passphrase is wrong") from None
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        pass
    elif not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"sign.key {where}: unsupported key type; use ECDSA P-256 or Ed25519 "
                          "(`doit sign_keygen --type ecdsa|ed25519`)")
    return CryptoSigner(private)


def load_public_key(path: Path) -> PublicKey:
    """One PEM public key file (SubjectPublicKeyInfo, as cosign and openssl write it).

    Raises:
        ConfigError: unreadable, not a PEM public key, or not ECDSA P-256 / Ed25519.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    try:
        public = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"public key {path}: cannot read it: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"public key {path}: not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not (isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)) and not \
            isinstance(public, ed25519.Ed25519PublicKey):
        raise ConfigError(f"public key {path}: unsupported key type; use ECDSA P-256 or Ed25519")
    key = SSlibKey.from_crypto(public)
    return PublicKey(str(path), key.keyid, key.keytype, key)


def load_public_keys(paths: Iterable[Path], what: str) -> list[PublicKey]:
    """Every key in ``paths``; ``what`` names the setting in the error when there is none."""
    keys = [load_public_key(p) for p in paths]
    if not keys:
        raise ConfigError(f"{what} lists no public key to verify with; add the signer's .pub file to it")
    return keys


def keyid_of(signer: Any) -> str:
    return str(signer.public_key.keyid)


def seal(statement: dict[str, Any], signer: Any) -> bytes:
    """The statement as a signed DSSE envelope (JSON bytes)."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode()


def open_envelope(data: bytes, keys: Sequence[PublicKey]) -> Opened:
    """Check the envelope's signature against ``keys`` and return its statement.

    The signature covers DSSE's pre-authentication encoding of payload type and
    payload, so a changed byte anywhere in either fails.

    Raises:
        VerificationFailed: not a DSSE envelope, no signature by any of ``keys``, or not an in-toto payload.
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    try:
        envelope = Envelope.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationFailed(f"not a DSSE envelope ({type(exc).__name__})") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise VerificationFailed(f"envelope payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
    by_id = {k.keyid: k for k in keys}
    if not set(envelope.signatures) & set(by_id):
        ids = ", ".join(s[:12] for s in envelope.signatures) or "none"
        raise VerificationFailed(f"signed by unknown key {ids}; trusted: {', '.join(k.label for k in keys)}")
    try:
        accepted = envelope.verify([k.key for k in keys], 1)
    except VerificationError:
        raise VerificationFailed("the signature does not match the envelope (tampered with, or not made by "
                                 "the key it names)") from None
    signer = by_id[next(iter(accepted))]
    try:
        statement = json.loads(envelope.payload)
    except ValueError:
        raise VerificationFailed("the signed payload is not JSON") from None
    if not isinstance(statement, dict):
        raise VerificationFailed("the signed payload is not an in-toto statement")
    return Opened(statement, signer)


# -- key generation -----------------------------------------------------------------------------

def keygen(out: Path, kind: str, passphrase: bytes | None, refuse_under: Sequence[Path]) -> tuple[Path, str]:
    """Write a new private key to ``out`` (mode 0600, created so) and its public key to ``out``.pub.

    Returns the public key's path and key id.  Nothing is overwritten.

    Raises:
        PipelineError: an unknown type, a file exists, or ``out`` is under one of ``refuse_under``.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )
    from securesystemslib.signer import SSlibKey

    if kind not in KEY_TYPES:
        raise PipelineError(f"sign_keygen: --type {kind!r} is not one of: {', '.join(KEY_TYPES)}")
    out = out.resolve()
    for folder in refuse_under:
        if out.is_relative_to(folder.resolve()):
            raise PipelineError(f"sign_keygen: {out} is inside {folder}, where a COPY or a cache could pick the private "
                                "key up; choose a path outside the project (e.g. ~/.config/pipeline/signing.pem)")
    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists():
            raise PipelineError(f"sign_keygen: {path} already exists; nothing overwritten (remove it or choose --out)")
    private = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else ed25519.Ed25519PrivateKey.generate()
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    public_path.write_bytes(public_pem)
    return public_path, str(SSlibKey.from_crypto(private.public_key()).keyid)

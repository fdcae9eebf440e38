"""Ed25519 signatures of a bundle's checksum manifest: who packed it.

``checksums.sha256`` lists the SHA-256 of every packed file (``bundle_manifest.json`` included), so a
signature of its bytes covers the whole bundle. :func:`generate_keypair` writes a private key (PEM, PKCS#8,
mode 0600) and its public key (PEM, SubjectPublicKeyInfo; ``openssl pkey -pubin`` reads it);
:func:`sign_checksums` makes ``checksums.sha256.sig`` (JSON: algorithm, key id, base64 signature);
:func:`check_signature` checks it against trusted public keys. The key id is the first 16 hex digits of
the SHA-256 of the raw 32-byte public key. Uses ``cryptography`` (PyPI).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.bundle_sharing.layout import SIGNATURE_FILE

__all__ = ["SIGNATURE_FILE", "SignatureError", "check_signature", "generate_keypair", "key_id",
           "load_private_key", "load_public_key", "sign_checksums"]

ALGORITHM = "Ed25519"


class SignatureError(ValueError):
    """A signature that is missing where one is required, malformed, by an untrusted key, or does not match."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out_stem>.key`` (private, 0600) and ``<out_stem>.pub``; refuses to overwrite either."""
    stem = Path(out_stem)
    private_path, public_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwriting a key")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: not an Ed25519 public key")
    return key


def sign_checksums(checksums: bytes, private: Ed25519PrivateKey) -> bytes:
    """The content of ``checksums.sha256.sig`` for the bytes of ``checksums.sha256``."""
    record = {"algorithm": ALGORITHM, "key_id": key_id(private.public_key()),
              "signed_file": "checksums.sha256",
              "signature": base64.b64encode(private.sign(checksums)).decode()}
    return (json.dumps(record, indent=2) + "\n").encode()


def check_signature(checksums: bytes, signature_file: bytes, trusted: Sequence[Ed25519PublicKey]) -> str:
    """The key id of the trusted key that signed ``checksums``; :class:`SignatureError` otherwise."""
    try:
        record = json.loads(signature_file)
        signature = base64.b64decode(record["signature"], validate=True)
        claimed = str(record.get("key_id", "?"))
        if record.get("algorithm") != ALGORITHM:
            raise SignatureError(f"{SIGNATURE_FILE}: algorithm {record.get('algorithm')!r}, expected {ALGORITHM}")
    except SignatureError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SignatureError(f"{SIGNATURE_FILE} is malformed ({type(exc).__name__}: {exc})") from None
    for key in trusted:
        try:
            key.verify(signature, checksums)
        except InvalidSignature:
            continue
        return key_id(key)
    known = ", ".join(key_id(k) for k in trusted)
    if claimed in {key_id(k) for k in trusted}:
        raise SignatureError(f"bad signature: {SIGNATURE_FILE} does not match checksums.sha256 for key {claimed} "
                             "(tampered after signing)")
    raise SignatureError(f"signed by key {claimed}, which is not a trusted key ({known})")

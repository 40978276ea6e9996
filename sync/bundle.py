"""Release bundles, the parts both ends share: keys, the manifest's exact bytes, its signature, a file's hash.

A bundle (sync/topics.py, "Updates") is ``releases/<version>/`` with the
wheels, ``manifest.json`` (``topics.ReleaseManifest``) and ``manifest.sig``:
the raw ed25519 signature of manifest.json's exact bytes, in base64. The hub
signs (sync/hub/fleet/releases.py, ``edge-hub release build``); the store
verifies with the public key it was given (edge_agent/release.py). Keys are
PEM: the private key PKCS#8 (kept 0600 at the hub), the public key
SubjectPublicKeyInfo (``updates.public_key_file`` at every store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync import topics

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CHUNK = 64 * 1024
# A wheel's file name: distribution-version(-build)?-python-abi-platform.whl (PEP 427).
_WHEEL_RE = re.compile(r"^(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.+!]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


class BundleError(ValueError):
    """A bundle, key or signature that is not right; the message says what."""


def new_key() -> tuple[bytes, bytes]:
    """A fresh ed25519 key pair as PEM: (private PKCS#8, public SubjectPublicKeyInfo)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_private(pem: bytes) -> Ed25519PrivateKey:
    """An ed25519 private key from PEM; BundleError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise BundleError(f"not a PEM private key without a password: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("the key is not an ed25519 key; make one with edge-hub release keygen")
    return key


def load_public(pem: bytes) -> Ed25519PublicKey:
    """An ed25519 public key from PEM; BundleError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        raise BundleError(f"not a PEM public key: {err}") from err
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("the public key is not an ed25519 key; use the one edge-hub release keygen wrote")
    return key


def manifest_bytes(manifest: topics.ReleaseManifest) -> bytes:
    """manifest.json as the hub writes and signs it: sorted keys, two-space indent, a final newline."""
    data: dict[str, Any] = manifest.model_dump(mode="json")
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """manifest.sig: the raw signature of ``data``, base64, with a final newline."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    """BundleError unless ``signature`` (manifest.sig's bytes) is ``key``'s signature of ``data``."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BundleError("manifest.sig is not base64") from err
    if len(raw) != 64:
        raise BundleError(f"manifest.sig holds {len(raw)} bytes, an ed25519 signature has 64")
    try:
        key.verify(raw, data)
    except InvalidSignature as err:
        raise BundleError("the signature of manifest.json does not verify with updates.public_key_file") from err


def parse_manifest(data: bytes) -> topics.ReleaseManifest:
    """The manifest from its bytes; BundleError saying what is wrong."""
    try:
        return topics.validate(topics.ReleaseManifest, topics.decode_json(data))
    except topics.PayloadError as err:
        raise BundleError(f"manifest.json: {err}") from err


def sha256_of(f: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 (hex) of what is left in ``f``."""
    h, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def file_entry(path: Path) -> topics.ReleaseFile:
    """The manifest's entry for one wheel."""
    with path.open("rb") as f:
        size, digest = sha256_of(f)
    return topics.ReleaseFile(name=path.name, size=size, sha256=digest)


def wheel_of(name: str) -> tuple[str, str] | None:
    """``(normalized distribution, version)`` of a wheel's file name, None for another name."""
    m = _WHEEL_RE.match(name)
    if m is None:
        return None
    return re.sub(r"[-_.]+", "-", m["dist"]).lower(), m["version"]

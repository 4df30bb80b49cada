"""Operators' signing keys: Ed25519 (the `cryptography` package) over canonical statements.

An operator proves who they are by signing what they decide with their personal private key; the
ledger keeps only the public key. A signature is over a *statement*: a kind ("approval",
"registry-request", ...) and its exact fields, serialized canonically (sorted keys, no spaces, ASCII
JSON), so the verifier rebuilds the same bytes from the stored columns and never trusts a stored blob.
A signature is not a secret: it is bound to one statement and proves nothing about any other.

- A key id is the SHA-256 of the raw 32-byte public key (hex): what rows refer to.
- A public key is written as base64 of its raw 32 bytes; a private key as PKCS#8 PEM (unencrypted:
  the file's mode, 0600, protects it), and never printed by the engine except once by `keygen`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sorae_payouts.core.errors import InvalidValue

STATEMENT_VERSION = "sorae-payouts/v1"


class KeyFormatError(InvalidValue):
    """A key or signature is not in the expected form; the message never contains the key itself."""


def signed_time(at: datetime) -> str:
    """The one text form of a time inside a statement: UTC, microseconds (what both databases keep)."""
    if at.tzinfo is None:
        raise KeyFormatError("a signed time must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def statement(kind: str, fields: dict) -> bytes:
    """The canonical bytes signed for a statement of `kind` with `fields` (JSON-serializable values)."""
    return json.dumps(
        {"statement": f"{STATEMENT_VERSION}/{kind}", **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key_text: str) -> str:
    """The key id of a public key given as base64 text (validated)."""
    return digest(_raw_public(parse_public_key(public_key_text)))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text (raw 32 bytes), as `keygen` prints it."""
    try:
        raw = base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KeyFormatError("a public key is the base64 of 32 raw Ed25519 bytes, as `operators keygen` prints it")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class SigningKey:
    """An operator's private key in memory. Its repr never shows the key."""

    _private: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id[:16]}...)"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes | str, *, source: str) -> SigningKey:
        """Load a PKCS#8 PEM private key; errors name `source` (a path or a reference), never the content."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFormatError(
                f"{source} does not hold an unencrypted PEM private key (create one with `sorae-payouts operators "
                "keygen`); its content is not shown"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(
                f"{source} holds a private key that is not Ed25519; create one with `operators keygen`"
            )
        return cls(key)

    def pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> str:
        return base64.b64encode(_raw_public(self._private.public_key())).decode("ascii")

    @property
    def key_id(self) -> str:
        return digest(_raw_public(self._private.public_key()))

    def sign(self, kind: str, fields: dict) -> str:
        """The base64 signature of the statement."""
        return base64.b64encode(self._private.sign(statement(kind, fields))).decode("ascii")


def verify(public_key_text: str, kind: str, fields: dict, signature: str | None) -> bool:
    """Whether `signature` (base64) is the key's signature of exactly this statement."""
    if not signature:
        return False
    try:
        public = parse_public_key(public_key_text)
        public.verify(base64.b64decode(signature, validate=True), statement(kind, fields))
    except (KeyFormatError, InvalidSignature, binascii.Error, ValueError):
        return False
    return True

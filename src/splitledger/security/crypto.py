"""AES-256-GCM encryption of sensitive fields with named keys, so keys can be rotated.

A ciphertext is stored with the id of the key that made it; new writes use the active key and
old ciphertexts stay readable while their key is configured. The party id is bound as
associated data: a ciphertext copied onto another party's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from splitledger.errors import ConfigurationError, InvariantViolation

NONCE_BYTES = 12


def parse_keyring(spec: str) -> dict[str, bytes]:
    """Read ``"k1:<base64 32 bytes>,k2:<...>"`` into a key id -> key mapping."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, _, encoded = item.partition(":")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ConfigurationError(f"encryption key {key_id!r} is not valid base64") from exc
        if not key_id or len(key) != 32:
            raise ConfigurationError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
        keys[key_id] = key
    return keys


def new_key_spec(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


@dataclass(frozen=True)
class FieldCipher:
    keys: dict[str, bytes]
    active_key_id: str

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise ConfigurationError(f"active encryption key {self.active_key_id!r} is not in "
                                     "the configured keys")

    @classmethod
    def from_spec(cls, spec: str, active_key_id: str | None = None) -> FieldCipher:
        keys = parse_keyring(spec)
        if not keys:
            raise ConfigurationError("no encryption key configured (SPLITLEDGER_ENCRYPTION_KEYS)")
        return cls(keys, active_key_id or next(reversed(keys)))

    def encrypt(self, plaintext: bytes, associated: str) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        key = self.keys[self.active_key_id]
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated.encode())
        return self.active_key_id, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, associated: str) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise ConfigurationError(f"encryption key {key_id!r} is no longer configured")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated.encode())
        except InvalidTag as exc:
            raise InvariantViolation("encrypted field failed authentication: tampered or moved "
                                     "to another row") from exc

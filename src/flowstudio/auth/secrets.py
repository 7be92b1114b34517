"""Encryption of user secrets at rest: AES-256-GCM with a key derived from SECRET_KEY by HKDF-SHA256.

`SecretBox.from_secret_key(secret_key)` derives the 32-byte key once (cached per SECRET_KEY) and raises
`SecretKeyMissing` when SECRET_KEY is empty. `box.encrypt(owner_id, name, value)` returns
`(ciphertext, nonce)` with a fresh random 96-bit nonce; `box.decrypt(owner_id, name, ciphertext, nonce)`
returns the value or raises `SecretDecryptError`. The owner id and the secret name are bound to the
ciphertext as associated data, so a row copied to another user or renamed does not decrypt.
Callers: the API's secret routes (`api/secrets.py`) encrypt; the worker (`worker/context.py`) decrypts.
"""

from __future__ import annotations

import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_SALT = b"flowstudio/secrets/v1"
HKDF_INFO = b"flowstudio user secrets AES-256-GCM key"
NONCE_BYTES = 12


class SecretKeyMissing(RuntimeError):
    """SECRET_KEY is empty: secrets can be neither stored nor read."""

    def __init__(self) -> None:
        super().__init__("SECRET_KEY not configured")


class SecretDecryptError(ValueError):
    """The ciphertext does not authenticate: SECRET_KEY changed or the row was tampered with."""


def _aad(owner_id: str, name: str) -> bytes:
    return f"flowstudio-secret:{owner_id}:{name}".encode()


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def from_secret_key(secret_key: str) -> SecretBox:
        if not secret_key:
            raise SecretKeyMissing()
        return _box_for(secret_key)

    def encrypt(self, owner_id: str, name: str, value: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self._aead.encrypt(nonce, value.encode(), _aad(owner_id, name)), nonce

    def decrypt(self, owner_id: str, name: str, ciphertext: bytes, nonce: bytes) -> str:
        try:
            plain = self._aead.decrypt(bytes(nonce), bytes(ciphertext), _aad(owner_id, name))
        except InvalidTag as exc:
            raise SecretDecryptError(
                f"secret {name!r} cannot be decrypted (was SECRET_KEY changed?)"
            ) from exc
        return plain.decode()


@lru_cache(maxsize=4)
def _box_for(secret_key: str) -> SecretBox:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        secret_key.encode()
    )
    return SecretBox(key)

"""Opaque bearer/session tokens and API keys: random secrets whose SHA-256 is what the DB stores.

`new_token()` -> (plain, digest); only the digest is persisted (sessions.token_hash, api_keys.key_hash),
so a database leak reveals no usable credential. Sessions are revocable (logout deletes the row).
"""

from __future__ import annotations

import hashlib
import secrets


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token(prefix: str = "fst") -> tuple[str, bytes]:
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    return token, digest(token)

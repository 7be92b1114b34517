"""Who a provider is: its normalised base_url and an HMAC fingerprint of its API key.

`normalise_base_url(url)` lower-cases scheme and host, drops a default port, a trailing slash, the
query and the fragment (None means OpenAI's default endpoint, as the SDK does).
`key_fingerprint(secret_key, api_key)` is HMAC-SHA256 of the key under a key derived from SECRET_KEY
by HKDF (so the fingerprint of a leaked table row cannot be brute-forced without SECRET_KEY); ''
for no key. Only `fingerprint_prefix` (12 hex characters) is ever shown. The key itself is never
stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OPENAI_DEFAULT = "https://api.openai.com/v1"
HKDF_SALT = b"flowstudio/providers/v1"
HKDF_INFO = b"flowstudio provider API key fingerprint"
PREFIX_CHARS = 12
NO_KEY = ("", "not-needed")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_base_url(url: str | None) -> str:
    if not url or not url.strip():
        return OPENAI_DEFAULT
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


@lru_cache(maxsize=4)
def _fingerprint_key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        secret_key.encode()
    )


def key_fingerprint(secret_key: str, api_key: str | None) -> str:
    if not api_key or api_key in NO_KEY:
        return ""
    return hmac.new(_fingerprint_key(secret_key), api_key.encode(), hashlib.sha256).hexdigest()


def fingerprint_prefix(fingerprint: str) -> str | None:
    return fingerprint[:PREFIX_CHARS] if fingerprint else None

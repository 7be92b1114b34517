"""External authentication against MAXplatform (AUTH_MODE=maxplatform).

`MaxplatformAuth.user_for_token(conn, token, client)` is called by `api.deps.provide_user` for a
bearer token that is not one of our own sessions. In order:
1. Our own token formats (`fss_` sessions, `fsk_` API keys, `fst_`) are never sent out: None at once.
2. A cache keyed by the token's SHA-256 (never the token) answers for MAXPLATFORM_CACHE_SECONDS after a
   success (the revocation window: a token MAXplatform revoked keeps working that long at most) and
   MAXPLATFORM_NEGATIVE_CACHE_SECONDS after a refusal (unknown tokens cost one call, not one per try).
3. Lookups not served by the cache are limited per client address (MAXPLATFORM_LOOKUPS_PER_MINUTE,
   fixed one-minute window); over it `LookupRateLimited` is raised (the API answers 429).
4. `${MAXPLATFORM_URL}${MAXPLATFORM_ME_PATH}` is asked with the token. The profile must carry an
   immutable subject (`id` or `sub`) and an email; the local user is found by (provider, subject)
   through `store.external_identities.user_for_identity` (handed in by the app as `link`, so auth/
   never imports the store), never by email, and an email collision with another account raises
   `EmailCollision` (the API answers 403; nothing is merged).
5. Roles come only through MAXPLATFORM_ROLE_MAP ("maxrole:flowstudiorole,..."); a profile with no
   mapped role gets MAXPLATFORM_DEFAULT_ROLE (viewer unless configured). A profile's `roles` claim
   never grants anything by itself, admin included.
Caches and the limiter live in the API process (each process has its own; all are bounded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
from cachetools import TLRUCache, TTLCache

from flowstudio.auth.roles import ROLES
from flowstudio.auth.tokens import digest
from flowstudio.settings import Settings

log = logging.getLogger(__name__)

PROVIDER = "maxplatform"
OWN_TOKEN_PREFIXES = ("fss_", "fsk_", "fst_")
CACHE_SIZE = 10_000
LOOKUP_WINDOW_S = 60.0

__all__ = ["EmailCollision", "LookupRateLimited", "MaxplatformAuth", "map_roles"]


class EmailCollision(Exception):
    """The profile's email belongs to another account; nothing was linked."""


# `store.external_identities.user_for_identity(conn, *, provider, subject, email, name, roles)`
LinkIdentity = Callable[..., Awaitable[dict[str, Any]]]


class LookupRateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many token lookups; retry in {retry_after} s")
        self.retry_after = retry_after


def map_roles(
    claimed: list[Any], role_map: tuple[tuple[str, str], ...], default_role: str
) -> list[str]:
    """Flowstudio roles for MAXplatform roles: only mapped ones count; else the default role."""
    wanted = {str(r) for r in claimed}
    roles = sorted({dst for src, dst in role_map if src in wanted and dst in ROLES})
    if roles:
        return roles
    return [default_role if default_role in ROLES else "viewer"]


def _expiry(_key: bytes, value: tuple[float, Any], now: float) -> float:
    return now + value[0]


class MaxplatformAuth:
    def __init__(self, settings: Settings, link: LinkIdentity) -> None:
        self.link = link
        self.url = settings.maxplatform_url.rstrip("/") + settings.maxplatform_me_path
        self.settings = settings
        # token digest -> (ttl, user row | None | EmailCollision)
        self._cache: TLRUCache[bytes, tuple[float, Any]] = TLRUCache(CACHE_SIZE, ttu=_expiry)
        # client address -> (window start, lookups in it)
        self._lookups: TTLCache[str, tuple[float, int]] = TTLCache(CACHE_SIZE, LOOKUP_WINDOW_S)
        self._http = httpx.AsyncClient(timeout=5.0, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    def _count_lookup(self, client: str) -> None:
        now = time.monotonic()
        start, n = self._lookups.get(client, (now, 0))
        if now - start >= LOOKUP_WINDOW_S:
            start, n = now, 0
        if n >= self.settings.maxplatform_lookups_per_minute:
            raise LookupRateLimited(max(1, int(LOOKUP_WINDOW_S - (now - start)) + 1))
        self._lookups[client] = (start, n + 1)

    async def _profile(self, token: str) -> tuple[dict[str, Any] | None, bool]:
        """(profile, definitive): a network failure is not a definitive refusal."""
        try:
            resp = await self._http.get(self.url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("MAXplatform unreachable (%s): %s", self.url, type(exc).__name__)
            return None, False
        if resp.status_code != 200:
            return None, resp.status_code < 500
        try:
            body = resp.json()
        except ValueError:
            return None, True
        if not isinstance(body, dict) or not body.get("email"):
            return None, True
        if not str(body.get("id") or body.get("sub") or "").strip():
            log.warning("MAXplatform profile without a subject id refused")
            return None, True
        return body, True

    async def user_for_token(
        self, conn: psycopg.AsyncConnection[Any], token: str, client: str
    ) -> dict[str, Any] | None:
        if token.startswith(OWN_TOKEN_PREFIXES):
            return None
        key = digest(token)
        cached = self._cache.get(key)
        if cached is None:
            self._count_lookup(client)
            cached = await self._resolve(conn, token)
            self._cache[key] = cached
        value = cached[1]
        if isinstance(value, EmailCollision):
            raise value
        return value  # type: ignore[no-any-return]

    async def _resolve(self, conn: psycopg.AsyncConnection[Any], token: str) -> tuple[float, Any]:
        s = self.settings
        profile, definitive = await self._profile(token)
        if profile is None:
            ttl = s.maxplatform_negative_cache_seconds
            return (ttl if definitive else min(ttl, 5.0), None)
        subject = str(profile.get("id") or profile.get("sub")).strip()
        roles = map_roles(
            profile.get("roles") or [], s.maxplatform_role_map, s.maxplatform_default_role
        )
        try:
            user = await self.link(
                conn,
                provider=PROVIDER,
                subject=subject,
                email=str(profile["email"]),
                name=str(profile.get("name") or ""),
                roles=roles,
            )
        except EmailCollision as exc:
            log.warning(
                "MAXplatform subject %s refused: its email belongs to another account", subject
            )
            return (s.maxplatform_negative_cache_seconds, exc)
        return (s.maxplatform_cache_seconds, user)

"""External authentication against MAXplatform (AUTH_MODE=maxplatform).

`MaxplatformAuth.user_for_token(conn, token)` is called by the API's `provide_user` for a bearer token
that is not one of our own sessions: it asks `${MAXPLATFORM_URL}${MAXPLATFORM_ME_PATH}` with that
token over httpx, caches the answer for `ttl` seconds (keyed by the token's SHA-256, never the token),
and creates or updates the local user row on first sight (`store.users.upsert_external_user`), so
ownership and roles work the same as for local users. Unknown roles map to `editor`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import psycopg

from flowstudio.auth.roles import ROLES
from flowstudio.auth.tokens import digest
from flowstudio.store import users

log = logging.getLogger(__name__)


class MaxplatformAuth:
    def __init__(self, base_url: str, me_path: str, ttl: float = 60.0) -> None:
        self.url = base_url.rstrip("/") + me_path
        self.ttl = ttl
        self._cache: dict[bytes, tuple[float, dict[str, Any] | None]] = {}
        self._http = httpx.AsyncClient(timeout=5.0, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def _me(self, token: str) -> dict[str, Any] | None:
        try:
            resp = await self._http.get(self.url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("MAXplatform unreachable (%s): %s", self.url, exc)
            return None
        if resp.status_code != 200:
            return None
        try:
            body = resp.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) and body.get("email") else None

    async def user_for_token(
        self, conn: psycopg.AsyncConnection[Any], token: str
    ) -> dict[str, Any] | None:
        key = digest(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            profile = cached[1]
        else:
            profile = await self._me(token)
            self._cache[key] = (now + (self.ttl if profile else min(self.ttl, 5.0)), profile)
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        if profile is None:
            return None
        roles = [r for r in profile.get("roles") or [] if r in ROLES] or ["editor"]
        return await users.upsert_external_user(
            conn, email=str(profile["email"]), name=str(profile.get("name") or ""), roles=roles
        )

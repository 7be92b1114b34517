"""The session cookie as login sets it and logout clears it.

`session_cookie(request, settings, token)`: HttpOnly, SameSite=Lax, Path=/. `Secure` follows
COOKIE_SECURE: `auto` (default) when the request came over TLS — uvicorn turns a proxy's
X-Forwarded-Proto into the request scheme only for peers in FORWARDED_ALLOW_IPS — `true` always,
`false` never. A secure cookie is named `__Host-fs_session`, which browsers accept only with Secure,
Path=/ and no Domain, so no sibling subdomain or plain-HTTP page can plant or overwrite it.
`cleared_session_cookies()` expires both names.
"""

from __future__ import annotations

from litestar.datastructures import Cookie

from flowstudio.api.deps import SECURE_SESSION_COOKIE, SESSION_COOKIE, AnyRequest
from flowstudio.settings import Settings

SESSION_MAX_AGE_S = 7 * 24 * 3600


def cookie_is_secure(request: AnyRequest, settings: Settings) -> bool:
    match settings.cookie_secure:
        case "true" | "1" | "yes" | "on":
            return True
        case "false" | "0" | "no" | "off":
            return False
        case _:
            return request.url.scheme == "https"


def session_cookie(request: AnyRequest, settings: Settings, token: str) -> Cookie:
    secure = cookie_is_secure(request, settings)
    return Cookie(
        key=SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
        value=token,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
        max_age=SESSION_MAX_AGE_S,
    )


def cleared_session_cookies() -> list[Cookie]:
    return [
        Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/"),
        Cookie(key=SECURE_SESSION_COOKIE, value="", max_age=0, path="/", secure=True),
    ]

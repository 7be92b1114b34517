"""Admin routes for LLM providers and their cluster-wide limits (issue 12; the Providers page).

`GET /api/v1/providers` and `GET /api/v1/providers/{id}` list providers with their limits and live
figures (calls in flight, effective concurrency, parked steps, requests and tokens of the last
minute, 429s); `POST` registers one ahead of its first call (`api_key_secret` names one of the
CALLER's secrets: its value is fingerprinted, never stored or returned; another user's secret is as
unknown as a missing one: 422), `PATCH` sets or clears (null) its label and limits, `DELETE`
removes it (workers register it again, without limits, on its next call). All need `users:admin`
(403 problem+json otherwise); limits are bounded in the type (422 with the field path). Workers
register providers on their own (`providers/permits.py`); SQL lives in `store/providers.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from litestar import Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, RequestBody

from flowstudio.api.deps import CurrentUser, RequestConn, User, requires
from flowstudio.api.errors import conflict, found, invalid, not_found
from flowstudio.api.secrets import check_secret_name, secret_box
from flowstudio.auth.secrets import SecretDecryptError
from flowstudio.providers.identity import fingerprint_prefix, key_fingerprint, normalise_base_url
from flowstudio.store import providers as store
from flowstudio.store import secrets as secret_store
from flowstudio.store.db import Conn

ADMIN = "users:admin"
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
Rpm = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
Tpm = Annotated[int, msgspec.Meta(ge=1, le=100_000_000_000)]
Label = Annotated[str, msgspec.Meta(max_length=200)]
BaseUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern="^https?://")]
SecretRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ProviderIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    base_url: BaseUrl
    api_key_secret: SecretRef | None = None
    label: Label | None = None
    max_concurrency: Concurrency | None = None
    rpm: Rpm | None = None
    tpm: Tpm | None = None


class ProviderPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    label: Label | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrency: Concurrency | msgspec.UnsetType | None = msgspec.UNSET
    rpm: Rpm | msgspec.UnsetType | None = msgspec.UNSET
    tpm: Tpm | msgspec.UnsetType | None = msgspec.UNSET


class ProviderOut(msgspec.Struct, kw_only=True):
    id: str
    base_url: str
    key_fingerprint: str | None  # a short prefix of the key's HMAC; never the key
    label: str | None
    max_concurrency: int | None
    rpm: int | None
    tpm: int | None
    effective_concurrency: int
    # the limit the provider's 429s revealed (calls in flight when it refused); null before any
    learned_limit: int | None
    in_flight: int
    parked: int
    requests_last_minute: int
    tokens_last_minute: int
    throttled_total: int
    last_throttled_at: str | None
    created_at: str
    updated_at: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def provider_out(row: dict[str, Any]) -> ProviderOut:
    return ProviderOut(
        id=str(row["id"]),
        base_url=row["base_url"],
        key_fingerprint=fingerprint_prefix(row["key_fingerprint"]),
        label=row["label"],
        max_concurrency=row["max_concurrency"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        effective_concurrency=int(row["effective_concurrency"]),
        learned_limit=row["learned_limit"],
        in_flight=int(row["in_flight"]),
        parked=int(row["parked"]),
        requests_last_minute=int(row["requests_last_minute"]),
        tokens_last_minute=int(row["tokens_last_minute"]),
        throttled_total=int(row["throttled_total"]),
        last_throttled_at=_iso(row["last_throttled_at"]),
        created_at=str(_iso(row["created_at"])),
        updated_at=str(_iso(row["updated_at"])),
    )


def checked_base_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as exc:
        raise invalid("body.base_url", f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("body.base_url", "must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise invalid("body.base_url", "must not carry credentials")
    return normalise_base_url(url)


async def _fingerprint_of_secret(state: State, user: User, conn: Conn, name: str) -> str:
    """The fingerprint of the caller's own secret `name` (422 if the caller has none so named)."""
    box = secret_box(state)
    check_secret_name(name, "body.api_key_secret")
    rows = await secret_store.load_secrets(conn, user.id, [name])
    if not rows:
        raise invalid("body.api_key_secret", f"you have no secret named {name}")
    row = rows[0]
    try:
        value = box.decrypt(user.id, name, row["ciphertext"], row["nonce"])
    except SecretDecryptError as exc:
        raise invalid("body.api_key_secret", "that secret cannot be decrypted") from exc
    return key_fingerprint(state.settings.secret_key, value)


async def _out(conn: Conn, provider_id: Any) -> ProviderOut:
    return provider_out(found(await store.get_provider(conn, provider_id), "provider"))


@get("/")
async def list_providers(user: CurrentUser, conn: RequestConn) -> list[ProviderOut]:
    return [provider_out(r) for r in await store.list_providers(conn)]


@get("/{provider_id:uuid}")
async def get_provider(
    provider_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> ProviderOut:
    return await _out(conn, provider_id)


@post("/", status_code=201)
async def create_provider(
    data: RequestBody[ProviderIn], state: State, user: CurrentUser, conn: RequestConn
) -> ProviderOut:
    base_url = checked_base_url(data.base_url)
    fingerprint = ""
    if data.api_key_secret is not None:
        fingerprint = await _fingerprint_of_secret(state, user, conn, data.api_key_secret)
    # Named arguments, alike in shape to worker.execute_node's call only; nothing shared.
    provider_id = await store.create_provider(
        conn,
        base_url=base_url,
        fingerprint=fingerprint,
        label=data.label,
        max_concurrency=data.max_concurrency,
        rpm=data.rpm,
        tpm=data.tpm,
        default_ceiling=state.settings.provider_default_max_concurrency,
        initial=state.settings.provider_initial_concurrency,
    )
    if provider_id is None:
        raise conflict(
            "a provider with this base_url and API key exists (PATCH it)",
            path="body.base_url",
            reason="already registered with this key",
        )
    return await _out(conn, provider_id)


@patch("/{provider_id:uuid}")
async def update_provider(
    provider_id: FromPath[UUID],
    data: RequestBody[ProviderPatch],
    state: State,
    user: CurrentUser,
    conn: RequestConn,
) -> ProviderOut:
    changes = {
        f: getattr(data, f)
        for f in ("label", "max_concurrency", "rpm", "tpm")
        if getattr(data, f) is not msgspec.UNSET
    }
    if changes and not await store.update_provider(
        conn,
        provider_id,
        changes,
        state.settings.provider_default_max_concurrency,
        state.settings.provider_initial_concurrency,
    ):
        raise not_found("provider")
    return await _out(conn, provider_id)


@delete("/{provider_id:uuid}", status_code=204)
async def delete_provider(
    provider_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    if not await store.delete_provider(conn, provider_id):
        raise not_found("provider")
    return Response(None, status_code=204)


# one guard for the whole controller: every route here needs `users:admin`
ROUTES = [
    Router(
        "/api/v1/providers",
        guards=[requires(ADMIN)],
        route_handlers=[
            list_providers,
            get_provider,
            create_provider,
            update_provider,
            delete_provider,
        ],
    )
]

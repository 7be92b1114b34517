"""Signed webhooks (like Stripe/GitHub): a secret per flow's webhook, HMAC-SHA256 over `t.body`.

Management (flow owner or admin, full-scope credentials only; `auth.scopes` keeps scoped keys out):
- `POST /api/v1/flows/{id}/webhook-secret` -> 201 `{"secret","header","created_at"}`: creates or
  rotates the secret (`whsec_...`, shown once, stored AES-GCM-encrypted like user secrets since the
  HMAC needs the value; 503 without SECRET_KEY).
- `GET` -> `{"signed","created_at"}`; `DELETE` -> 204 (the webhook is unsigned again).
Verification (`verify_webhook`, called by `api.webhooks.receive_webhook` for every call of a flow
that has a secret, after the caller's credentials were checked): the header
`X-Flowstudio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>` must be
present, `t` within WEBHOOK_TOLERANCE_SECONDS of now and one `v1` equal under `hmac.compare_digest`;
anything else is 401 (the reason in the problem detail, never the secret). A verified call returns
its idempotency key `webhook-sig:<sha256 of t and signature>`, which the webhook uses instead of any
`Idempotency-Key` header: the same signed request sent again inside the window (a replay, or the
sender's retry after a lost answer) returns the run it already started and starts nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from flowstudio.api.deps import CurrentUser, RequestConn, requires
from flowstudio.api.errors import Problem, problem
from flowstudio.api.flows import owned_flow
from flowstudio.api.secrets import secret_box
from flowstudio.store import webhook_secrets as store
from flowstudio.store.db import Conn

HEADER = "X-Flowstudio-Signature"
SECRET_NAME = "webhook-signing"  # bound to the ciphertext with the flow id (auth.secrets AAD)


class WebhookSecretCreated(msgspec.Struct, kw_only=True):
    secret: str
    header: str
    created_at: datetime


class WebhookSecretState(msgspec.Struct, kw_only=True):
    signed: bool
    created_at: datetime | None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex `v1` value for a body sent at `timestamp` (senders do the same)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _unauthorized(reason: str) -> Problem:
    return problem(
        401, f"webhook signature refused: {reason}", path=f"header.{HEADER}", reason=reason
    )


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise _unauthorized("expected t=<unix seconds>,v1=<hex hmac>")
    return timestamp, signatures


async def verify_webhook(
    state: State, conn: Conn, flow_id: UUID, headers: Any, body: bytes
) -> str | None:
    """None for an unsigned webhook; the run's idempotency key for a correctly signed call; else
    401."""
    row = await store.get_secret(conn, flow_id)
    if row is None:
        return None
    header = headers.get(HEADER.lower(), "")
    if not header:
        raise _unauthorized("missing; this webhook requires a signature")
    timestamp, given = _parse(header)
    tolerance = state.settings.webhook_tolerance_seconds
    if abs(time.time() - timestamp) > tolerance:
        raise _unauthorized(f"timestamp outside the {tolerance} s window")
    secret = secret_box(state).decrypt(str(flow_id), SECRET_NAME, row["ciphertext"], row["nonce"])
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise _unauthorized("signature does not match")
    return "webhook-sig:" + hashlib.sha256(f"{timestamp}.{expected}".encode()).hexdigest()


@post(
    "/api/v1/flows/{flow_id:uuid}/webhook-secret", status_code=201, guards=[requires("flows:write")]
)
async def create_webhook_secret(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn, state: State
) -> WebhookSecretCreated:
    await owned_flow(conn, user, flow_id)
    box = secret_box(state)
    secret = "whsec_" + secrets.token_urlsafe(32)
    ciphertext, nonce = box.encrypt(str(flow_id), SECRET_NAME, secret)
    row = await store.put_secret(conn, flow_id, ciphertext, nonce, user.id)
    return WebhookSecretCreated(secret=secret, header=HEADER, created_at=row["created_at"])


@get("/api/v1/flows/{flow_id:uuid}/webhook-secret", guards=[requires("flows:read")])
async def get_webhook_secret(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> WebhookSecretState:
    await owned_flow(conn, user, flow_id)
    row = await store.get_secret(conn, flow_id)
    return WebhookSecretState(signed=row is not None, created_at=row["created_at"] if row else None)


@delete(
    "/api/v1/flows/{flow_id:uuid}/webhook-secret", status_code=204, guards=[requires("flows:write")]
)
async def delete_webhook_secret(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    await owned_flow(conn, user, flow_id)
    await store.delete_secret(conn, flow_id)
    return Response(None, status_code=204)


ROUTES = [create_webhook_secret, get_webhook_secret, delete_webhook_secret]

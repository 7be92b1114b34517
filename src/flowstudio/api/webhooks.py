"""Inbound webhooks: `POST /api/v1/webhook/{flow_id_or_endpoint_name}` starts a run, answers 202.

Meant for other systems calling in with an API key (`x-api-key: fsk_...`, or `Authorization: Bearer
fsk_...`); any valid credential works (a `run` or `run:flow:` scoped key is enough). When the flow's
webhook has a signing secret, the call must also carry a valid, fresh, unreplayed
`X-Flowstudio-Signature` (`api.webhook_signing.verify_webhook`, else 401), and the signature is the
run's idempotency key (a replay returns the same run). `receive_webhook` resolves
the flow (`api.access.resolve_flow_ref`), turns the body into inputs with `webhook_inputs` (a JSON object is the inputs
itself; any other JSON value or a non-JSON body becomes `{"body", "content_type"}`) and starts the
run through `api.runs.start_flow_run` (access checks, published version, `Idempotency-Key`). Any
content type is accepted (`opt={"body": "any"}`); `api/guards.py` still refuses NUL and over-deep
JSON before this runs, and a cookie-only request from another origin (CSRF).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from flowstudio.api.access import resolve_flow_ref, runnable_flow
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, requires
from flowstudio.api.errors import bad_request
from flowstudio.api.runs import start_flow_run
from flowstudio.api.webhook_signing import ROUTES as SIGNING_ROUTES
from flowstudio.api.webhook_signing import verify_webhook


class WebhookAccepted(msgspec.Struct, kw_only=True):
    run_id: str
    status: str
    flow_id: str


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def webhook_inputs(raw: bytes, content_type: str) -> dict[str, Any]:
    """The run inputs for a webhook body; 400 for a body that claims JSON but is not."""
    if not raw.strip():
        return {}
    if _is_json(content_type) or not content_type:
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            if content_type:
                raise bad_request(f"invalid JSON body: {exc}") from exc
        else:
            if isinstance(value, dict):
                return value
            return {"body": value, "content_type": content_type or "application/json"}
    return {"body": raw.decode("utf-8", errors="replace"), "content_type": content_type}


@post(
    "/api/v1/webhook/{flow_ref:str}",
    status_code=202,
    opt={"body": "any"},
    guards=[requires("runs:write")],
)
async def receive_webhook(
    flow_ref: FromPath[str],
    request: AnyRequest,
    state: State,
    user: CurrentUser,
    conn: RequestConn,
    version: FromQuery[int | None] = None,
) -> WebhookAccepted:
    flow_id = await resolve_flow_ref(conn, user, flow_ref)
    raw = await request.body()
    await runnable_flow(conn, user, flow_id)  # 404/403 before anything tells a flow is signed
    signed_key = await verify_webhook(state, conn, flow_id, request.headers, raw)
    inputs = webhook_inputs(raw, request.headers.get("content-type", ""))
    idempotency_key = signed_key or request.headers.get("idempotency-key")
    created = await start_flow_run(state, conn, user, flow_id, inputs, version, idempotency_key)
    return WebhookAccepted(run_id=created.id, status=created.status, flow_id=str(flow_id))


ROUTES = [receive_webhook, *SIGNING_ROUTES]

"""API key scopes: what a key may do, decided once per request by `api.deps.provide_user`.

- `full`: everything its user can (the default; the old keys are all `full`).
- `run`: run the user's flows (and flows shared with them to run) and read those runs: permissions
  are cut to `RUN_PERMISSIONS`, the user's admin role does not come along, and only the routes in
  `RUN_ROUTES` answer (any other route is 403 before its handler runs: deny by default).
- `run:flow:<uuid>`: like `run`, for that one flow only: `FLOW_ROUTES`, and `api.access` /
  `api.runs.owned_run` hide every other flow and its runs (404).
Routes are named by (method, Litestar path template) so a new route is closed to scoped keys until
it is added here.
"""

from __future__ import annotations

from uuid import UUID

FULL = "full"
RUN = "run"
RUN_FLOW_PREFIX = "run:flow:"

RUN_PERMISSIONS = frozenset({"flows:read", "runs:read", "runs:write"})

FLOW_ROUTES = frozenset(
    {
        ("GET", "/api/auth/me"),
        ("GET", "/api/v1/flows/{flow_id}"),
        ("POST", "/api/v1/flows/{flow_id}/runs"),
        ("POST", "/api/v1/run/{flow_id}"),
        ("POST", "/api/v1/webhook/{flow_ref}"),
        ("POST", "/api/v1/openai/chat/completions"),
        ("GET", "/api/v1/runs/{run_id}"),
        ("GET", "/api/v1/runs/{run_id}/events"),
    }
)
RUN_ROUTES = FLOW_ROUTES | frozenset(
    {
        ("GET", "/api/v1/flows"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/openai/models"),
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/runs/{run_id}/cancel"),
        ("POST", "/api/v1/runs/{run_id}/signal"),
        ("POST", "/api/v1/flows/{flow_id}/batches"),
        ("GET", "/api/v1/batches"),
        ("GET", "/api/v1/batches/{batch_id}"),
        ("GET", "/api/v1/batches/{batch_id}/results"),
    }
)


def make_scope(scope: str, flow_id: UUID | None) -> str | None:
    """The stored scope for a creation request, or None when the pair is not valid."""
    if scope in (FULL, RUN):
        return scope if flow_id is None else None
    if scope == "run:flow" and flow_id is not None:
        return f"{RUN_FLOW_PREFIX}{flow_id}"
    if scope.startswith(RUN_FLOW_PREFIX):
        try:
            named = UUID(scope.removeprefix(RUN_FLOW_PREFIX))
        except ValueError:
            return None
        return f"{RUN_FLOW_PREFIX}{named}" if flow_id in (None, named) else None
    return None


def flow_of(scope: str) -> str | None:
    """The one flow a `run:flow:` scope allows, else None."""
    return scope.removeprefix(RUN_FLOW_PREFIX) if scope.startswith(RUN_FLOW_PREFIX) else None


def route_allowed(scope: str, method: str, path_template: str) -> bool:
    if scope == FULL:
        return True
    routes = RUN_ROUTES if scope == RUN else FLOW_ROUTES
    return (method.upper(), path_template) in routes

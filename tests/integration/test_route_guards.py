"""Every route declares who may call it, once, in its decorator or its router (`guards=[requires(...)]`
or `guards=[authenticated]`, `api/deps.py`); only the routes in `PUBLIC` answer without credentials.
A new route without a guard fails here before it ships open. The test introspects the real app's
route handlers (`create_app`), so nothing is started."""

from __future__ import annotations

from typing import Any

from litestar.routes import HTTPRoute

from flowstudio.api.app import create_app
from flowstudio.api.deps import Requires, authenticated
from flowstudio.api.guards import check_request
from flowstudio.settings import load_settings

# (method, path template) -> why it answers without credentials
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/health/live"): "liveness probe",
    ("GET", "/health/ready"): "readiness probe",
    ("GET", "/metrics"): "Prometheus scrape (observability/http.py)",
    ("POST", "/api/auth/login"): "how credentials are obtained",
    ("POST", "/api/auth/logout"): "ends the session its token names, if any",
    ("GET", "/api/auth/signup"): "a redirect to MAXplatform's signup page",
    ("GET", "/api/v1/nodes"): "the node catalogue: public data, no user rows",
    ("GET", "/"): "the designer (static files) or the page that says how to get it",
}
# routes that exist only in some builds: the static files router when the designer is built
OPTIONAL_PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/{file_path}"): "the designer's static files (when frontend/dist is built)",
}
SCHEMA_PREFIX = "/schema"  # Litestar's OpenAPI documents
# OPTIONS: Litestar's own CORS preflight handlers; HEAD: the static files router's, beside its GET
SKIPPED_METHODS = ("OPTIONS", "HEAD")


def _handlers() -> list[tuple[str, str, Any]]:
    app = create_app(load_settings(None))
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if str(method) not in SKIPPED_METHODS:
                out.append((str(method), route.path_format, handler))
    return out


def _auth_guards(handler: Any) -> list[Any]:
    """The auth guards of the route and of its router (a controller declares one for all)."""
    return [g for g in handler.resolve_guards() if isinstance(g, Requires) or g is authenticated]


def test_every_route_but_the_public_ones_declares_a_guard() -> None:
    unguarded = []
    for method, path, handler in _handlers():
        if path.startswith(SCHEMA_PREFIX) or (method, path) in {**PUBLIC, **OPTIONAL_PUBLIC}:
            continue
        if not _auth_guards(handler):
            unguarded.append(f"{method} {path}")
    assert not unguarded, f"routes without a guard (add one, or list them in PUBLIC): {unguarded}"


def test_public_routes_are_really_open_and_still_exist() -> None:
    seen = {(m, p): h for m, p, h in _handlers()}
    missing = set(PUBLIC) - set(seen)
    assert not missing, f"PUBLIC names routes the app no longer has: {missing}"
    guarded = [key for key in PUBLIC if _auth_guards(seen[key])]
    assert not guarded, f"PUBLIC routes that declare a guard: {guarded}"


def test_a_handler_that_takes_the_user_is_guarded_and_request_checks_run_first() -> None:
    for method, path, handler in _handlers():
        resolved = handler.resolve_guards()
        assert resolved and resolved[0].__name__ == check_request.__name__, f"{method} {path}"
        if "user" in handler.parsed_fn_signature.parameters:
            assert _auth_guards(handler), f"{method} {path} reads the user but declares no guard"


def test_write_routes_require_a_write_permission() -> None:
    """The permission named in the guard is the one the route needs (a few pinned examples)."""
    expected = {
        ("POST", "/api/v1/runs/{run_id}/cancel"): "runs:write",
        ("POST", "/api/v1/runs/{run_id}/resume"): "runs:write",
        ("POST", "/api/v1/runs/{run_id}/fork"): "runs:write",
        ("POST", "/api/v1/flows/{flow_id}/runs"): "runs:write",
        ("GET", "/api/v1/runs/{run_id}"): "runs:read",
        ("PUT", "/api/v1/flows/{flow_id}"): "flows:write",
        ("GET", "/api/v1/users"): "users:admin",
        ("DELETE", "/api/v1/users/{user_id}/permissions/{permission}"): "users:admin",
        ("PUT", "/api/v1/secrets/{name}"): "secrets:write",
        ("PUT", "/api/v1/flows/{flow_id}/secrets/{name}"): "flows:write",
        ("GET", "/api/v1/flows/{flow_id}/secrets"): "flows:read",
        ("GET", "/api/v1/ops/stats"): "ops:read",
    }
    got = {
        (m, p): g.permission
        for m, p, h in _handlers()
        for g in _auth_guards(h)
        if isinstance(g, Requires)
    }
    for key, permission in expected.items():
        assert got.get(key) == permission, key

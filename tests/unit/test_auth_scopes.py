"""Unit tests of the pure parts of authentication hardening: key scopes (`auth.scopes`), the
MAXplatform role mapping (`auth.maxplatform.map_roles`) and the login backoff's wait
(`store.login_attempts.BackoffPolicy`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from flowstudio.api.app import create_app
from flowstudio.auth import scopes
from flowstudio.auth.maxplatform import map_roles
from flowstudio.settings import load_settings
from flowstudio.store.login_attempts import BackoffPolicy


def test_scope_requests_are_normalised_or_refused() -> None:
    fid = uuid.uuid4()
    assert scopes.make_scope("full", None) == "full"
    assert scopes.make_scope("run", None) == "run"
    assert scopes.make_scope("run:flow", fid) == f"run:flow:{fid}"
    assert scopes.make_scope(f"run:flow:{fid}", None) == f"run:flow:{fid}"
    assert scopes.make_scope(f"run:flow:{fid}", fid) == f"run:flow:{fid}"
    for bad in (
        ("admin", None),
        ("run:flow", None),
        ("run", fid),
        (f"run:flow:{fid}", uuid.uuid4()),
    ):
        assert scopes.make_scope(*bad) is None
    assert scopes.make_scope("run:flow:nope", None) is None
    assert scopes.flow_of(f"run:flow:{fid}") == str(fid) and scopes.flow_of("run") is None


def test_scoped_routes_deny_by_default_and_name_real_routes() -> None:
    assert scopes.route_allowed("full", "POST", "/api/v1/api-keys")
    for scope in ("run", f"run:flow:{uuid.uuid4()}"):
        assert not scopes.route_allowed(scope, "POST", "/api/v1/api-keys")
        assert not scopes.route_allowed(scope, "POST", "/api/v1/secrets")
        assert not scopes.route_allowed(scope, "POST", "/api/v1/flows")
        assert not scopes.route_allowed(scope, "GET", "/api/v1/some/new/route")
        assert scopes.route_allowed(scope, "POST", "/api/v1/flows/{flow_id}/runs")
    app = create_app(load_settings(None))
    real = {(m, r.path_format) for r in app.routes for m in getattr(r, "methods", ())}
    missing = scopes.RUN_ROUTES - real
    assert not missing, f"scopes name routes the app does not have: {missing}"


def test_roles_come_only_from_the_mapping() -> None:
    mapping = (("builder", "editor"), ("ops", "admin"), ("x", "not-a-role"))
    assert map_roles(["admin"], mapping, "viewer") == ["viewer"]
    assert map_roles(["builder", "ops"], mapping, "viewer") == ["admin", "editor"]
    assert map_roles(["x"], mapping, "runner") == ["runner"]
    assert map_roles([], (), "superuser") == ["viewer"], "an unknown default falls back to viewer"


def test_backoff_waits_double_after_the_free_failures_up_to_the_cap() -> None:
    policy = BackoffPolicy(pair_free=5, ip_free=20, email_free=50, base_s=1, max_s=900, window_s=60)
    now = datetime.now(timezone.utc)
    assert policy.wait(4, 5, now, now) == 0
    assert [policy.wait(n, 5, now, now) for n in (5, 6, 7, 8)] == [1, 2, 4, 8]
    assert policy.wait(100, 5, now, now) == 900
    assert policy.wait(6, 5, now - timedelta(seconds=3), now) <= 0, "the wait has passed"

"""Unit tests of the one error mapping (`api/errors.py`): every engine refusal code
(`engine/errors.py`) answers one fixed status and problem+json body, and the problem helpers build
the bodies the API has always sent (the public contract, /work/shared/DESIGN.md)."""

from __future__ import annotations

from typing import Any

import pytest

from flowstudio.api import errors
from flowstudio.api.openai_compat import HANDLERS
from flowstudio.engine.errors import CommandError, ErrorCode

NODE = ("node_id", "unknown node")
KEY = ("idempotency_key", "already used for a run of another flow")
# code -> (detail, (field, reason) or None, status, title, errors[0].path or None)
EXPECTED: dict[ErrorCode, tuple[str, tuple[str, str] | None, int, str, str | None]] = {
    ErrorCode.RUN_NOT_FOUND: ("run not found", None, 404, "Not Found", None),
    ErrorCode.RUN_FINISHED: ("run is already succeeded", None, 409, "Conflict", None),
    ErrorCode.RUN_NOT_RESUMABLE: (
        "only failed or cancelled runs resume",
        None,
        409,
        "Conflict",
        None,
    ),
    ErrorCode.UNKNOWN_NODE: ("no node 'x'", NODE, 422, "Unprocessable Content", "body.node_id"),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: (
        "key reused",
        KEY,
        409,
        "Conflict",
        "header.Idempotency-Key",
    ),
    ErrorCode.BATCH_FINISHED: ("batch is already succeeded", None, 409, "Conflict", None),
    ErrorCode.BATCH_CANCELLED: ("cancelled while loading", None, 409, "Conflict", None),
    ErrorCode.DATABASE_UNAVAILABLE: (
        "database unavailable",
        None,
        503,
        "Service Unavailable",
        None,
    ),
}


def _refusal(code: ErrorCode) -> CommandError:
    detail, field, *_ = EXPECTED[code]
    if field is None:
        return CommandError(code, detail)
    return CommandError(code, detail, field=field[0], reason=field[1])


def _body(exc: Exception) -> tuple[int, str, dict[str, Any]]:
    handler = errors.exception_handlers()[type(exc)]
    response = handler(None, exc)
    return response.status_code, response.media_type, response.content


def test_every_error_code_has_one_status() -> None:
    assert set(errors.ENGINE_PROBLEMS) == set(ErrorCode), "a code without an HTTP status"
    assert set(EXPECTED) == set(ErrorCode), "a code this test does not pin"


@pytest.mark.parametrize("code", list(ErrorCode))
def test_each_error_code_maps_to_its_status_and_problem_body(code: ErrorCode) -> None:
    detail, field, status, title, path = EXPECTED[code]
    expected: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    expected["detail"] = detail
    if field is not None:
        expected["errors"] = [{"path": path, "reason": field[1]}]
    assert _body(_refusal(code)) == (status, errors.PROBLEM, expected)


def test_retryability_is_a_typed_field_with_a_per_code_default() -> None:
    assert CommandError(ErrorCode.DATABASE_UNAVAILABLE, "x").retryable is True
    assert CommandError(ErrorCode.RUN_FINISHED, "x").retryable is False
    assert CommandError(ErrorCode.RUN_FINISHED, "x", retryable=True).retryable is True


def test_openai_routes_answer_engine_refusals_in_their_own_format() -> None:
    exc = _refusal(ErrorCode.IDEMPOTENCY_KEY_REUSED)
    response = HANDLERS[CommandError](None, exc)
    assert response.status_code == 409
    assert response.content["error"]["message"] == exc.detail


@pytest.mark.parametrize(
    ("made", "status", "title", "detail", "field_errors"),
    [
        (errors.not_found("run"), 404, "Not Found", "run not found", None),
        (errors.forbidden("missing permission runs:write"), 403, "Forbidden", None, None),
        (
            errors.forbidden("refused", path="header.Origin"),
            403,
            "Forbidden",
            "refused",
            [{"path": "header.Origin", "reason": "refused"}],
        ),
        (errors.conflict("run is already failed"), 409, "Conflict", None, None),
        (
            errors.invalid("query.limit", "must be between 1 and 500", "limit must be 1-500"),
            422,
            "Unprocessable Content",
            "limit must be 1-500",
            [{"path": "query.limit", "reason": "must be between 1 and 500"}],
        ),
        (
            errors.invalid("body.name", "required"),
            422,
            "Unprocessable Content",
            "required",
            [{"path": "body.name", "reason": "required"}],
        ),
        (errors.bad_request("invalid JSON"), 400, "Bad Request", None, None),
        (errors.unavailable("database unavailable"), 503, "Service Unavailable", None, None),
        (
            errors.rejected(
                [{"path": "body.a", "reason": "bad"}, {"path": "body.b", "reason": "x"}]
            ),
            422,
            "Unprocessable Content",
            "bad",
            [{"path": "body.a", "reason": "bad"}, {"path": "body.b", "reason": "x"}],
        ),
    ],
)
def test_problem_helpers_build_the_usual_bodies(
    made: errors.Problem,
    status: int,
    title: str,
    detail: str | None,
    field_errors: list[dict[str, str]] | None,
) -> None:
    got_status, _, body = _body(made)
    assert got_status == status
    assert body["title"] == title and body["status"] == status
    assert body["detail"] == (detail or made.detail)
    assert body.get("errors") == field_errors


def test_too_many_sends_retry_after_as_a_header() -> None:
    made = errors.too_many("slow down", 60)
    response = errors.exception_handlers()[errors.Problem](None, made)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert "Retry-After" not in response.content

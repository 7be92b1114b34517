"""Every API error as RFC 9457 problem+json, translated in one place.

Controllers raise a `Problem` made by a helper: `not_found(what)` (`found(row, what)` checks a
lookup), `forbidden(detail)`, `conflict(detail)`, `invalid(path, reason, detail)` (422 with the
field path), `bad_request`, `rejected(errors)` (several at once), `unauthorized`,
`too_many(detail, retry_after)`, `unavailable(detail)`, or `problem(status, detail, path=...,
reason=...)` for the rest; the title is the status's (`TITLES`). `Problem(status, title,
detail, errors=[{path, reason}], headers={...})` stays the one exception (headers are sent as HTTP
headers, e.g. Retry-After; other keywords become body members). Engine commands raise
`engine.errors.CommandError`; `problem_of` maps its code to a status (`ENGINE_PROBLEMS`) and its
field to a request path (`body.<field>`, or `FIELD_PATHS`). `exception_handlers()` maps those two,
Litestar's own HTTP/validation exceptions (body decode errors keep their field path), a
RecursionError (400, one log line) and unexpected exceptions (logged, answered 500 without internals)
to `application/problem+json`.
`decode_optional_body` decodes a raw body into a Struct with the same field-path errors.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from flowstudio.engine.errors import CommandError, ErrorCode

log = logging.getLogger(__name__)
T = TypeVar("T")
PROBLEM = "application/problem+json"
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    path: str | None = None,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> Problem:
    """A problem with the status's title; `path` + `reason` make its one `errors` entry."""
    errors = [{"path": path, "reason": reason or detail}] if path is not None else None
    return Problem(status, TITLES[status], detail, errors=errors, headers=headers)


def not_found(what: str) -> Problem:
    return problem(404, f"{what} not found")


def found(row: T | None, what: str) -> T:
    """`row`, or 404 `{what} not found` when the lookup found nothing."""
    if row is None:
        raise not_found(what)
    return row


def forbidden(detail: str, *, path: str | None = None, reason: str | None = None) -> Problem:
    return problem(403, detail, path=path, reason=reason)


def conflict(detail: str, *, path: str | None = None, reason: str | None = None) -> Problem:
    return problem(409, detail, path=path, reason=reason)


def invalid(path: str, reason: str, detail: str | None = None) -> Problem:
    """422: the input at `path` (`body.nodes[2].type`, `query.limit`, `header.X`) is wrong."""
    return problem(422, detail or reason, path=path, reason=reason)


def rejected(
    errors: list[dict[str, Any]], *, status: int = 422, title: str | None = None
) -> Problem:
    """Several field errors at once (`[{path, reason}, ...]`); the first reason is the detail."""
    return Problem(status, title or TITLES[status], errors[0]["reason"], errors=errors)


def bad_request(detail: str, *, path: str | None = None, reason: str | None = None) -> Problem:
    return problem(400, detail, path=path, reason=reason)


def unauthorized(detail: str) -> Problem:
    return problem(401, detail)


def too_many(
    detail: str, retry_after: int | str, *, path: str | None = None, reason: str | None = None
) -> Problem:
    return problem(429, detail, path=path, reason=reason, headers={"Retry-After": str(retry_after)})


def unavailable(detail: str) -> Problem:
    return problem(503, detail)


# Each engine refusal's HTTP status; `tests/unit/test_error_mapping.py` keeps it complete.
ENGINE_PROBLEMS: dict[ErrorCode, int] = {
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.RUN_FINISHED: 409,
    ErrorCode.RUN_NOT_RESUMABLE: 409,
    ErrorCode.UNKNOWN_NODE: 422,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 409,
    ErrorCode.BATCH_FINISHED: 409,
    ErrorCode.BATCH_CANCELLED: 409,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
}
# Command arguments that do not come from the JSON body; the others are `body.<field>`.
FIELD_PATHS = {"idempotency_key": "header.Idempotency-Key"}


def problem_of(exc: CommandError) -> Problem:
    """The one translation of an engine refusal into an HTTP problem."""
    path = None if exc.field is None else FIELD_PATHS.get(exc.field, f"body.{exc.field}")
    return problem(ENGINE_PROBLEMS[exc.code], exc.detail, path=path, reason=exc.reason)


def _on_problem(_: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(
        exc.status, exc.title, exc.detail, exc.errors, headers=exc.headers, **exc.extra
    )


def _on_command_error(request: Request[Any, Any, Any], exc: CommandError) -> Response[Any]:
    return _on_problem(request, problem_of(exc))


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = item.get("key") or ""
            message = str(item.get("message", "invalid"))
            path = message.split(" - at `$", 1)[1].rstrip("`") if " - at `$" in message else ""
            reason = message.split(" - at `$", 1)[0]
            source = item.get("source") or "body"
            path = f"{source}{path}" if not key else f"{source}.{key}"
            if source == "body" and key == "data":  # the error is about the body as a whole
                path = "body"
            missing = _MISSING_FIELD.search(reason)
            if missing:  # point at the missing field itself, not at the object lacking it
                path = f"{path}.{missing.group(1)}"
            errors.append({"path": path, "reason": reason})
    malformed = "malformed" in str(exc.detail).lower() or "decode" in str(exc.detail).lower()
    status = 400 if malformed else 422
    return problem_response(
        status,
        "Bad Request" if malformed else "Unprocessable Content",
        str(exc.detail),
        errors or None,
    )


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return Response(
        {
            "type": "about:blank",
            "title": _title(exc.status_code),
            "status": exc.status_code,
            "detail": exc.detail,
        },
        status_code=exc.status_code,
        media_type=PROBLEM,
        headers=exc.headers,
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _on_recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """Input nested too deeply for some code path the request guard did not foresee: a 400 and
    one log line, never a 3,000-line traceback."""
    log.warning("input nested too deeply on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        400,
        "Bad Request",
        "input nested too deeply",
        [{"path": "body", "reason": "nested too deeply"}],
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")


def exception_handlers() -> dict[Any, Any]:
    return {
        Problem: _on_problem,
        CommandError: _on_command_error,
        ValidationException: _on_validation,
        HTTPException: _on_http,
        RecursionError: _on_recursion,
        Exception: _on_unexpected,
    }


def decode_optional_body(raw: bytes, type_: type[T]) -> T:
    """An empty body means all defaults; otherwise decode strictly with the field path on errors."""
    if not raw.strip():
        return type_()
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        msg, _, where = str(exc).partition(" - at `$")
        raise invalid("body" + where.rstrip("`"), msg) from exc
    except msgspec.DecodeError as exc:
        raise bad_request(f"invalid JSON: {exc}") from exc

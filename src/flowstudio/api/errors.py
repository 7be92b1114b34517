"""Every API error as RFC 9457 problem+json, translated in one place.

Controllers raise `Problem(status, title, detail, errors=[{path, reason}], headers={...})` (headers
are sent as HTTP headers, e.g. Retry-After; other keywords become body members); `exception_handlers()`
maps it, Litestar's own HTTP/validation exceptions (body decode errors keep their field path), a
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


def not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"{what} not found")


def _on_problem(_: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(
        exc.status, exc.title, exc.detail, exc.errors, headers=exc.headers, **exc.extra
    )


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
        raise Problem(
            422,
            "Unprocessable Content",
            msg,
            errors=[{"path": "body" + where.rstrip("`"), "reason": msg}],
        ) from exc
    except msgspec.DecodeError as exc:
        raise Problem(400, "Bad Request", f"invalid JSON: {exc}") from exc

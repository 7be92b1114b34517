"""flowstudio.jsonlimits: depth and NUL problems are found with their path, iteratively (no
RecursionError however deep), and ordinary bodies take the fast path without being decoded."""

from __future__ import annotations

import msgspec

from flowstudio.jsonlimits import NUL_REASON, body_problem, json_problem, needs_walk


def nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_depth_is_counted_from_the_outermost_container() -> None:
    assert json_problem(nested(64), "body", 64) is None
    problem = json_problem(nested(65), "body", 64)
    assert problem is not None and problem.path == "body" + ".a" * 64
    assert "64" in problem.reason


def test_a_value_far_deeper_than_the_stack_is_walked_without_recursion() -> None:
    value: object = 1
    for _ in range(100_000):
        value = [value]
    problem = json_problem(value, "body", 64)
    assert problem is not None and problem.path == "body" + "[0]" * 64


def test_nul_in_values_and_keys_is_found_with_its_path() -> None:
    problem = json_problem({"inputs": {"rows": [{"x": "ok"}, {"y": "a\x00b"}]}})
    assert problem == ("body.inputs.rows[1].y", NUL_REASON)
    problem = json_problem({"a": {"k\x00": 1}})
    assert problem is not None and problem.path == "body.a"


def test_raw_bodies_too_deep_to_decode_are_reported_at_body() -> None:
    raw = b"[" * 5000 + b"]" * 5000
    problem = body_problem(raw, 64)
    assert problem is not None and problem.path == "body"


def test_ordinary_bodies_take_the_fast_path() -> None:
    raw = msgspec.json.encode({"name": "x", "definition": {"nodes": [{"id": "a"}] * 10}})
    assert not needs_walk(raw, 64)
    assert body_problem(raw, 64) is None
    assert body_problem(b"{not json", 64) is None  # malformed JSON is the handler's 400
    assert body_problem(b'{"a": "\\u0000"}', 64) == ("body.a", NUL_REASON)
    assert body_problem(b'{"a": "\\\\u0000"}', 64) is None  # an escaped backslash, not a NUL

"""Pure helpers of the node families: text splitting, the hash embedder, message parsing, Retry-After,
router ports in validation, HTTP auth headers, the OpenAI SDK warm-up."""

from __future__ import annotations

import base64
import logging
import math
import re
import socket

import anyio
import pytest

from flowstudio.flows.validate import validate_definition
from flowstudio.nodes.http import HttpAuth, auth_headers
from flowstudio.nodes.llm import parse_messages
from flowstudio.nodes.llm_client import retry_after_seconds, warm_up
from flowstudio.nodes.rag import split_text
from flowstudio.nodes.registry import NodeError
from flowstudio.nodes.vectors import hash_embed

SEPS = ["\n\n", "\n", ". ", " ", ""]


@pytest.mark.parametrize(("size", "overlap"), [(20, 0), (50, 10), (200, 40), (7, 3)])
def test_split_text_chunks_fit_and_cover_every_word(size: int, overlap: int) -> None:
    text = "\n\n".join(
        f"Paragraph {p}. " + " ".join(f"word{p}_{i}" for i in range(p * 3 + 2)) for p in range(6)
    )
    chunks = split_text(text, size, overlap, SEPS)
    assert all(0 < len(c) <= size for c in chunks)
    kept = set(re.findall(r"\w+", " ".join(chunks)))
    assert {w for w in re.findall(r"\w+", text) if len(w) <= size} <= kept


def test_split_text_overlaps_neighbours_and_prefers_paragraphs() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    chunks = split_text(text, 20, 8, SEPS)
    assert chunks[0] == "alpha beta gamma"
    assert any(w in chunks[1] for w in chunks[0].split()[-1:])
    assert split_text("one\n\ntwo\n\nthree", 9, 0, SEPS) == ["one\n\ntwo", "three"]
    assert split_text("x" * 25, 10, 0, []) == ["x" * 10, "x" * 10, "x" * 5]


def test_hash_embedder_is_deterministic_normalised_and_similarity_aware() -> None:
    a, b = hash_embed("the cat sat on the mat"), hash_embed("the cat sat on the mat")
    assert a == b and len(a) == 256
    assert math.isclose(sum(v * v for v in a), 1.0)
    cat, dog = hash_embed("a cat on a mat"), hash_embed("stock market crash today")

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cos(a, cat) > cos(a, dog)
    assert hash_embed("") == [0.0] * 256


def test_parse_messages_accepts_lists_memory_outputs_json_and_repr() -> None:
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert parse_messages(msgs) == msgs
    assert parse_messages({"messages": msgs, "session_id": "s"}) == msgs
    assert parse_messages('[{"role": "user", "content": "hi"}]') == msgs[:1]
    assert parse_messages(str(msgs)) == msgs
    assert parse_messages(None) == [] and parse_messages("") == []
    with pytest.raises(NodeError, match="role"):
        parse_messages([{"role": "wizard", "content": "x"}])


def test_retry_after_reads_seconds_ms_and_dates() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) is None


def test_http_auth_headers() -> None:
    assert auth_headers(HttpAuth(type="bearer", token="t")) == {"Authorization": "Bearer t"}
    basic = auth_headers(HttpAuth(type="basic", username="u", password="p"))
    assert basic == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert auth_headers(HttpAuth(type="api_key", header="X-K", value="v")) == {"X-K": "v"}
    assert auth_headers(None) == {}


def test_router_edges_are_checked_against_its_routes() -> None:
    def flow(handle: str) -> dict:
        routes = [{"name": "yes", "expression": "inputs.x"}]
        return {
            "nodes": [
                {"id": "r", "type": "router", "data": {"params": {"routes": routes}}},
                {"id": "t", "type": "noop"},
            ],
            "edges": [{"source": "r", "target": "t", "sourceHandle": handle}],
        }

    assert validate_definition(flow("yes"))[1] == []
    assert validate_definition(flow("default"))[1] == []
    (err,) = validate_definition(flow("no"))[1]
    assert "no output port 'no'" in err.reason and "yes, default" in err.reason


def test_the_openai_sdk_warm_up_runs_both_call_shapes_without_a_socket(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's start-up warm-up completes a plain and a streamed chat completion through
    its in-memory transport: nothing is logged as failed, and no name is ever resolved (its
    host, warm-up.invalid, could not be: nothing leaves the process)."""

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError("the warm-up looked a host up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    with caplog.at_level(logging.WARNING, logger="flowstudio.nodes.llm_client"):
        anyio.run(warm_up)
    assert not caplog.records

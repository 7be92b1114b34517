"""The nodes use the guard even with no worker around them, and the default refuses loopback.

With HTTP_ALLOWED_HOSTS unset (the shipped default), `http_request` to a live server on 127.0.0.1 (by
address and by `localhost`) fails without retry and the server sees no request; `guard_url`, kept for
older callers, refuses the 6to4 form of loopback that the old guard let through; a document download
stops at DOCUMENT_MAX_BYTES.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowstudio.nodes.http import HttpParams, _allowed, guard_url, run_http_request
from flowstudio.nodes.rag import LoaderParams, run_document_loader
from flowstudio.nodes.registry import NodeContext, NodeError
from flowstudio.settings import load_settings
from tests.support.tiny_http import TinyServer


def _ctx(settings: Any) -> NodeContext:
    return NodeContext("run", 1, "call", 0, 1, {}, None, settings)


def test_http_request_refuses_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_ALLOWED_HOSTS", raising=False)
    settings = load_settings(env_file=None)
    assert settings.http_allowed_hosts == ()
    server = TinyServer("127.0.0.1")
    try:
        for host in ("127.0.0.1", "localhost"):
            params = HttpParams(url=server.url("/", host=host))
            with pytest.raises(NodeError) as info:
                anyio.run(run_http_request, _ctx(settings), params)
            assert "refused" in info.value.message and not info.value.retryable
        assert server.hits == 0
        monkeypatch.setenv("HTTP_ALLOWED_HOSTS", "127.0.0.1")  # the operator allows it: it works
        params = HttpParams(url=server.url("/"))
        done = anyio.run(run_http_request, _ctx(load_settings(env_file=None)), params)
        assert done.output["status"] == 200 and server.hits == 1
    finally:
        server.close()


def test_guard_url_wrapper_refuses_the_6to4_form_of_loopback() -> None:
    with pytest.raises(NodeError, match="refused"):
        anyio.run(guard_url, "http://[2002:7f00:1::1]/", ())
    with pytest.raises(NodeError, match="refused"):
        anyio.run(guard_url, "http://100.100.100.200/latest/meta-data", ("127.0.0.1",))


def test_document_loader_download_is_capped_by_the_server_setting() -> None:
    """`max_bytes` (20 MB by default) is capped by DOCUMENT_MAX_BYTES; the read stops there."""

    class Settings:
        http_allowed_hosts = ("127.0.0.1",)
        document_max_bytes = 50_000

    server = TinyServer("127.0.0.1")
    try:
        params = LoaderParams(url=server.url("/big?n=3000000"))
        with pytest.raises(NodeError, match="larger than 50000 bytes") as info:
            anyio.run(run_document_loader, _ctx(Settings()), params)
        assert not info.value.retryable
        small = LoaderParams(url=server.url("/big?n=40000"), format="text")
        done = anyio.run(run_document_loader, _ctx(Settings()), small)
        assert len(done.output["text"]) == 40000
    finally:
        server.close()


def test_old_allow_list_helper_still_answers_for_older_callers() -> None:
    assert _allowed("localhost", "127.0.0.1", ("localhost",))
    assert _allowed("x.test", "10.1.2.3", ("10.0.0.0/8",))
    assert not _allowed("x.test", "127.0.0.1", ("localhost",))

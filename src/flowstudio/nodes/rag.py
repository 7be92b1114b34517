"""RAG nodes: `document_loader`, `text_splitter`, `embeddings`, `vector_store_upsert`, `retriever`.

Documents travel between them as `{"documents": [{"id"?, "text", "metadata"}]}`. `run_document_loader`
gets bytes from a URL (through the egress guard, redirects followed hop by hop; size capped by
`max_bytes` and DOCUMENT_MAX_BYTES), inline `content` or `content_base64`, picks a format
(`detect_format`) and parses text/markdown, PDF (pypdf, one document per page, in a thread) or CSV (one
document per row, `rows` too). `run_text_splitter` cuts documents with `split_text` (recursive by
separators, then merged up to `chunk_size` with `chunk_overlap`). `run_embeddings` and the two store
nodes embed through `vectors.embed_texts`; `run_vector_store_upsert` writes a collection owned by the run
owner, `run_retriever` embeds the query and returns the `top_k` most similar chunks (`vectors.search`).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from flowstudio.egress import EgressError, EgressTooLarge, client_for, send_following
from flowstudio.nodes.bounds import (
    CallTimeout,
    ChunkChars,
    DocumentBytes,
    OverlapChars,
    Score,
    TopK,
)
from flowstudio.nodes.http import check_url
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, register
from flowstudio.nodes.vectors import (
    EmbedderConfig,
    embed_texts,
    embedder_id,
    ensure_collection,
    find_collection,
    upsert_items,
)
from flowstudio.store.vectors import search

Docs = list[dict[str, Any]] | str | None
FORMATS = ("text", "markdown", "pdf", "csv")


class LoaderParams(msgspec.Struct, kw_only=True):
    url: str | None = None
    content: str | None = None  # inline text (markdown, CSV, ...)
    content_base64: str | None = None  # inline bytes (a PDF upload)
    format: Literal["auto", "text", "markdown", "pdf", "csv"] = "auto"
    filename: str | None = None  # helps `auto` pick the format
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # for url, e.g. auth from secrets
    csv_text_columns: list[str] = msgspec.field(default_factory=list)  # default: every column
    csv_delimiter: str = ","
    max_bytes: DocumentBytes = 20_000_000  # and at most DOCUMENT_MAX_BYTES (server setting)
    timeout_s: CallTimeout = 30.0


class SplitterParams(msgspec.Struct, kw_only=True):
    text: str | None = None  # default: the documents (or text) at the input port
    documents: Docs = None
    chunk_size: ChunkChars = 1000
    chunk_overlap: OverlapChars = 200
    separators: list[str] = msgspec.field(default_factory=lambda: ["\n\n", "\n", ". ", " ", ""])


class EmbeddingsParams(EmbedderConfig, kw_only=True):
    text: str | None = None  # one text -> {"embedding"}; default: embed the input documents
    documents: Docs = None


class UpsertParams(EmbedderConfig, kw_only=True):
    collection: str
    documents: Docs = None  # default: the input port's documents; embedded unless they carry one


class RetrieverParams(EmbedderConfig, kw_only=True):
    collection: str
    query: str
    top_k: TopK = 4
    min_score: Score | None = None
    filter: dict[str, Any] = msgspec.field(default_factory=dict)  # metadata containment


def _as_doc(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"text": value, "metadata": {}}
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return {**value, "metadata": dict(value.get("metadata") or {})}
    raise NodeError("a document must be a string or {text, metadata}", retryable=False)


def input_documents(ctx: NodeContext, explicit: Docs, text: str | None = None) -> list[dict]:
    """The documents a node works on: its `documents`/`text` param, else what its input carries."""
    if text is not None:
        return [_as_doc(text)]
    value: Any = explicit
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise NodeError("documents: not JSON (use `| tojson`)", retryable=False) from exc
    if value is None:
        value = ctx.input
        if isinstance(value, dict) and "documents" not in value and "text" not in value:
            found = [v for v in value.values() if isinstance(v, dict) and "documents" in v]
            value = found[0] if found else value  # several inputs: the one with documents
    if isinstance(value, dict):
        value = value.get("documents", [value] if "text" in value else None)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise NodeError(
            "no documents: connect a loader/splitter or set `documents`", retryable=False
        )
    return [_as_doc(d) for d in value]


def detect_format(params: LoaderParams, data: bytes, content_type: str = "") -> str:
    if params.format != "auto":
        return params.format
    name = (params.filename or urlsplit(params.url or "").path).lower()
    for ext, fmt in (
        (".pdf", "pdf"),
        (".csv", "csv"),
        (".md", "markdown"),
        (".markdown", "markdown"),
    ):
        if name.endswith(ext):
            return fmt
    if data.startswith(b"%PDF-") or "pdf" in content_type:
        return "pdf"
    if "csv" in content_type:
        return "csv"
    return "markdown" if "markdown" in content_type else "text"


async def _fetch(ctx: NodeContext, params: LoaderParams, url: str) -> tuple[bytes, str]:
    """GET through the egress guard, the body capped at min(max_bytes, DOCUMENT_MAX_BYTES)."""
    check_url(url)
    cap = min(params.max_bytes, int(getattr(ctx.settings, "document_max_bytes", params.max_bytes)))
    headers = {"Idempotency-Key": ctx.idempotency_key, **params.headers}
    try:
        async with client_for(
            ctx.http, ctx.settings, timeout=params.timeout_s, max_response_bytes=cap
        ) as client:
            resp = await send_following(  # each hop checked; headers stay with their origin
                client,
                client.build_request("GET", url, headers=headers),
                follow=True,
                max_redirects=client.max_redirects,
                private_headers=params.headers,
            )
            try:
                if resp.status_code >= 400:
                    retryable = resp.status_code == 429 or resp.status_code >= 500
                    raise NodeError(f"HTTP {resp.status_code} from {url}", retryable=retryable)
                return await resp.aread(), resp.headers.get("content-type", "")
            finally:
                await resp.aclose()
    except EgressTooLarge as exc:
        raise NodeError(f"document larger than {cap} bytes", retryable=False) from exc
    except EgressError as exc:
        raise NodeError(exc.reason, retryable=exc.retryable) from exc
    except httpx.HTTPError as exc:
        raise NodeError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


def parse_pdf(data: bytes, source: str) -> list[dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise NodeError("the PDF is encrypted", retryable=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise NodeError(f"cannot read the PDF: {exc}", retryable=False) from exc
    return [
        {"text": text, "metadata": {"source": source, "page": i + 1, "format": "pdf"}}
        for i, text in enumerate(pages)
    ]


def parse_csv(text: str, params: LoaderParams, source: str) -> tuple[list[dict], list[dict]]:
    if len(params.csv_delimiter) != 1:
        raise NodeError("csv_delimiter must be one character", retryable=False)
    try:
        rows = list(csv.DictReader(io.StringIO(text), delimiter=params.csv_delimiter))
    except csv.Error as exc:
        raise NodeError(f"cannot read the CSV: {exc}", retryable=False) from exc
    cols = params.csv_text_columns
    docs = []
    for i, row in enumerate(rows):
        row = {k: v for k, v in row.items() if k is not None}  # extra cells have no header
        if cols:
            body = "\n".join(str(row.get(c, "")) for c in cols)
        else:
            body = "\n".join(f"{k}: {v}" for k, v in row.items())
        docs.append({"text": body, "metadata": {"source": source, "row": i, "format": "csv"}})
    return docs, rows


async def run_document_loader(ctx: NodeContext, params: LoaderParams) -> Done:
    given = [p for p in (params.url, params.content, params.content_base64) if p]
    if len(given) != 1:
        raise NodeError("give exactly one of url, content, content_base64", retryable=False)
    content_type = ""
    if params.url:
        data, content_type = await _fetch(ctx, params, params.url)
        source = params.url
    elif params.content_base64:
        try:
            data = base64.b64decode(params.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NodeError("content_base64 is not valid base64", retryable=False) from exc
        source = params.filename or "inline"
    else:
        data = (params.content or "").encode()
        source = params.filename or "inline"
    if len(data) > params.max_bytes:
        raise NodeError(f"document larger than {params.max_bytes} bytes", retryable=False)
    fmt = detect_format(params, data, content_type)
    out: dict[str, Any] = {"format": fmt}
    if fmt == "pdf":
        docs = await anyio.to_thread.run_sync(parse_pdf, data, source)
    else:
        text = data.decode("utf-8-sig", errors="replace")
        if fmt == "csv":
            docs, out["rows"] = parse_csv(text, params, source)
        else:
            docs = [{"text": text, "metadata": {"source": source, "format": fmt}}]
    out.update(documents=docs, count=len(docs), text="\n\n".join(d["text"] for d in docs))
    return Done(out)


def _merge_splits(splits: list[str], sep: str, size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    total = 0
    for piece in splits:
        extra = len(sep) if current else 0
        if current and total + len(piece) + extra > size:
            chunk = sep.join(current).strip()
            if chunk:
                chunks.append(chunk)
            while current and (
                total > overlap or total + len(piece) + (len(sep) if current else 0) > size
            ):
                total -= len(current[0]) + (len(sep) if len(current) > 1 else 0)
                current.pop(0)
        current.append(piece)
        total += len(piece) + (len(sep) if len(current) > 1 else 0)
    chunk = sep.join(current).strip()
    if chunk:
        chunks.append(chunk)
    return chunks


def split_text(text: str, size: int, overlap: int, separators: list[str]) -> list[str]:
    """Recursive character splitting: split on the first separator present, keep pieces that fit,
    split the others with the next separators, then merge neighbours up to `size` with `overlap`."""
    sep, rest = "", []
    for i, candidate in enumerate(separators):
        if candidate == "" or candidate in text:
            sep, rest = candidate, separators[i + 1 :]
            break
    else:  # no separator applies: hard windows
        step = max(1, size - overlap)
        return [text[i : i + size] for i in range(0, len(text), step) if text[i : i + size].strip()]
    pieces = text.split(sep) if sep else list(text)
    out: list[str] = []
    fitting: list[str] = []
    for piece in pieces:
        if len(piece) <= size:
            fitting.append(piece)
            continue
        if fitting:
            out += _merge_splits(fitting, sep, size, overlap)
            fitting = []
        out += split_text(piece, size, overlap, rest)
    if fitting:
        out += _merge_splits(fitting, sep, size, overlap)
    return out


async def run_text_splitter(ctx: NodeContext, params: SplitterParams) -> Done:
    if params.chunk_size < 1 or not 0 <= params.chunk_overlap < params.chunk_size:
        raise NodeError("need chunk_size >= 1 and 0 <= chunk_overlap < chunk_size", retryable=False)
    chunks = []
    for doc in input_documents(ctx, params.documents, params.text):
        parts = split_text(doc["text"], params.chunk_size, params.chunk_overlap, params.separators)
        for i, part in enumerate(parts):
            chunk: dict[str, Any] = {"text": part, "metadata": {**doc["metadata"], "chunk": i}}
            if doc.get("id"):
                chunk["id"] = f"{doc['id']}#{i}"
            chunks.append(chunk)
    return Done({"documents": chunks, "count": len(chunks)})


def _dims_of(vectors: list[list[float]]) -> int:
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise NodeError(f"embeddings have mixed dimensions {sorted(dims)}", retryable=False)
    return dims.pop()


async def run_embeddings(ctx: NodeContext, params: EmbeddingsParams) -> Done:
    meta = {"embedder": embedder_id(params)}
    if params.text is not None:
        (vector,), usage = await embed_texts(ctx, params, [params.text])
        return Done({"embedding": vector, "dimensions": len(vector), "usage": usage, **meta})
    docs = input_documents(ctx, params.documents)
    vectors, usage = await embed_texts(ctx, params, [d["text"] for d in docs])
    out = [{**d, "embedding": v} for d, v in zip(docs, vectors, strict=True)]
    dims = _dims_of(vectors) if vectors else 0
    return Done({"documents": out, "dimensions": dims, "usage": usage, **meta})


def _need_db(ctx: NodeContext) -> Any:
    if ctx.db is None or not ctx.owner_id:
        raise NodeError("vector store nodes need the worker's database and the run owner")
    return ctx.db


async def run_vector_store_upsert(ctx: NodeContext, params: UpsertParams) -> Done:
    pool = _need_db(ctx)
    docs = input_documents(ctx, params.documents)
    missing = [d for d in docs if not d.get("embedding")]
    vectors, usage = await embed_texts(ctx, params, [d["text"] for d in missing])
    for doc, vec in zip(missing, vectors, strict=True):
        doc["embedding"] = vec
    if not docs:
        return Done({"collection": params.collection, "upserted": 0, "ids": [], "usage": usage})
    dims = _dims_of([d["embedding"] for d in docs])
    async with pool.connection() as conn:
        cid = await ensure_collection(
            conn, ctx.owner_id, params.collection, embedder_id(params), dims
        )
        ids = await upsert_items(conn, cid, docs)
    return Done(
        {
            "collection": params.collection,
            "upserted": len(ids),
            "ids": ids,
            "dimensions": dims,
            "usage": usage,
        }
    )


async def run_retriever(ctx: NodeContext, params: RetrieverParams) -> Done:
    pool = _need_db(ctx)
    if not 1 <= params.top_k <= 1000:
        raise NodeError("top_k must be between 1 and 1000", retryable=False)
    async with pool.connection() as conn:
        coll = await find_collection(conn, ctx.owner_id, params.collection)
    if coll["embedder"] != embedder_id(params):
        raise NodeError(
            f"collection {params.collection!r} was built with {coll['embedder']}; "
            f"this retriever embeds with {embedder_id(params)}",
            retryable=False,
        )
    (query,), usage = await embed_texts(ctx, params, [params.query])
    async with pool.connection() as conn:
        docs = await search(conn, coll, query, params.top_k, params.filter, params.min_score)
    return Done(
        {
            "query": params.query,
            "documents": docs,
            "text": "\n\n".join(d["text"] for d in docs),
            "usage": usage,
        }
    )


for spec in (
    NodeSpec(
        "document_loader",
        "Document loader",
        "rag",
        "Loads text, markdown, PDF or CSV from a URL or inline content into documents.",
        LoaderParams,
        run_document_loader,
    ),
    NodeSpec(
        "text_splitter",
        "Text splitter",
        "rag",
        "Splits documents into overlapping chunks (recursive by separators).",
        SplitterParams,
        run_text_splitter,
    ),
    NodeSpec(
        "embeddings",
        "Embeddings",
        "rag",
        "Embeds a text or documents (OpenAI-compatible endpoint, or offline hash/local).",
        EmbeddingsParams,
        run_embeddings,
        extra={"reports_usage": True},
    ),
    NodeSpec(
        "vector_store_upsert",
        "Vector store upsert",
        "rag",
        "Embeds and stores documents in a named collection (yours only), replacing same ids.",
        UpsertParams,
        run_vector_store_upsert,
        extra={"reports_usage": True},
    ),
    NodeSpec(
        "retriever",
        "Retriever",
        "rag",
        "Finds the chunks of a collection most similar to a query (cosine similarity).",
        RetrieverParams,
        run_retriever,
        extra={"reports_usage": True},
    ),
):
    register(spec)

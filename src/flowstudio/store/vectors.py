"""SQL of the vector store behind the RAG nodes (nodes/rag.py): collections, upserts and search.

Two search paths, chosen per database by `uses_pgvector(conn)` (does `vector_items.embedding_v`
exist? migration 0019 adds it where the pgvector extension is available, e.g. the embedded
PostgreSQL 18):
- pgvector: upserts also write `embedding_v`; each collection gets its own partial HNSW index on
  `embedding_v::vector(d)` (cosine ops), built when the collection is created; a search without a
  metadata filter orders by the `<=>` distance through that index (approximate: recall is reported
  by `flowstudio bench --vectors`).
- exact: cosine similarity computed in SQL over the float8[] column with stored norms, every row of
  the collection scanned; used without pgvector and for searches with a metadata filter (an HNSW scan
  filters after ranking and could return fewer than top_k).
Item ids make upserts idempotent, so a re-run step rewrites the same rows.
"""

from __future__ import annotations

import math
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

_PGVECTOR: dict[tuple[str, str, str], bool] = {}
# HNSW candidates per search: 40 (pgvector's default) gave recall@10 0.87 at 100k x 128 in the bench
EF_SEARCH = 100

HAS_VECTOR_COLUMN = """SELECT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_name = 'vector_items' AND column_name = 'embedding_v') AS yes"""
CREATE_COLLECTION = """
INSERT INTO vector_collections (owner_id, name, embedder, dimensions) VALUES (%s, %s, %s, %s)
ON CONFLICT (owner_id, name) DO UPDATE SET name = EXCLUDED.name
RETURNING id, embedder, dimensions, (xmax = 0) AS created"""
FIND_COLLECTION = """SELECT id, embedder, dimensions FROM vector_collections
                     WHERE owner_id = %s AND name = %s"""
UPSERT_EXACT = """
INSERT INTO vector_items (collection_id, item_id, text, metadata, embedding, norm)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (collection_id, item_id) DO UPDATE SET text = EXCLUDED.text,
    metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding, norm = EXCLUDED.norm,
    updated_at = now()"""
UPSERT_PGVECTOR = """
INSERT INTO vector_items (collection_id, item_id, text, metadata, embedding, norm, embedding_v)
VALUES (%s, %s, %s, %s, %s, %s, %s::float8[]::vector)
ON CONFLICT (collection_id, item_id) DO UPDATE SET text = EXCLUDED.text,
    metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding, norm = EXCLUDED.norm,
    embedding_v = EXCLUDED.embedding_v, updated_at = now()"""
SEARCH_EXACT = """
SELECT item_id, text, metadata, score FROM (
    SELECT item_id, text, metadata,
           (SELECT sum(a * b) FROM unnest(embedding, %(q)s::float8[]) AS t(a, b))
             / NULLIF(norm * %(qnorm)s, 0) AS score
    FROM vector_items
    WHERE collection_id = %(cid)s AND metadata @> %(filter)s) ranked
WHERE %(min)s::float8 IS NULL OR score >= %(min)s::float8
ORDER BY score DESC NULLS LAST, item_id LIMIT %(k)s"""
# {dims} is the collection's own integer dimension count (from the database), never user text.
SEARCH_PGVECTOR = """
SELECT item_id, text, metadata, score FROM (
    SELECT item_id, text, metadata,
           1 - (embedding_v::vector({dims}) <=> %(q)s::float8[]::vector({dims})) AS score
    FROM vector_items WHERE collection_id = %(cid)s
    ORDER BY embedding_v::vector({dims}) <=> %(q)s::float8[]::vector({dims})
    LIMIT %(k)s) ranked
WHERE %(min)s::float8 IS NULL OR score >= %(min)s::float8
ORDER BY score DESC, item_id"""


def _server_key(conn: Any) -> tuple[str, str, str]:
    info = conn.info
    return (str(info.host), str(info.port), str(info.dbname))


async def uses_pgvector(conn: Any) -> bool:
    key = _server_key(conn)
    if key not in _PGVECTOR:
        cur = await conn.execute(HAS_VECTOR_COLUMN)
        row = await cur.fetchone()
        _PGVECTOR[key] = bool(row["yes"] if isinstance(row, dict) else row[0])
    return _PGVECTOR[key]


async def create_hnsw_index(conn: Any, collection_id: int, dimensions: int) -> None:
    await conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON vector_items USING hnsw "
            "((embedding_v::vector({dims})) vector_cosine_ops) WHERE collection_id = {cid}"
        ).format(
            name=sql.Identifier(f"vector_items_hnsw_{int(collection_id)}"),
            dims=sql.Literal(int(dimensions)),
            cid=sql.Literal(int(collection_id)),
        )
    )


async def ensure_collection(
    conn: Any, owner_id: str, name: str, embedder: str, dimensions: int
) -> dict[str, Any]:
    """The collection row (created with its HNSW index if new); the caller checks the embedder."""
    cur = await conn.execute(CREATE_COLLECTION, (owner_id, name, embedder, dimensions))
    row = dict(await cur.fetchone())
    if row.pop("created") and await uses_pgvector(conn):
        await create_hnsw_index(conn, row["id"], row["dimensions"])
    return row


async def upsert_items(conn: Any, collection_id: int, rows: list[tuple[Any, ...]]) -> None:
    """rows: (item_id, text, metadata dict, embedding list) each."""
    pgvector = await uses_pgvector(conn)
    params = []
    for item, text, metadata, vec in rows:
        norm = math.sqrt(sum(v * v for v in vec))
        base = (collection_id, item, text, Jsonb(metadata), vec, norm)
        params.append((*base, vec) if pgvector else base)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(UPSERT_PGVECTOR if pgvector else UPSERT_EXACT, params)


async def find_collection(conn: Any, owner_id: str, name: str) -> dict[str, Any] | None:
    cur = await conn.execute(FIND_COLLECTION, (owner_id, name))
    row = await cur.fetchone()
    return None if row is None else dict(row)


async def search(
    conn: Any,
    collection: dict[str, Any],
    query: list[float],
    top_k: int,
    metadata_filter: dict[str, Any],
    min_score: float | None,
    *,
    exact: bool = False,
) -> list[dict[str, Any]]:
    """Top-k items by cosine similarity; `exact` forces the full scan (the bench's ground truth)."""
    args = {"q": query, "cid": collection["id"], "min": min_score, "k": top_k}
    if not exact and not metadata_filter and await uses_pgvector(conn):
        statement = SEARCH_PGVECTOR.format(dims=int(collection["dimensions"]))
        async with conn.transaction():  # the candidate list of this one scan (pgvector default 40)
            await conn.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}")
            cur = await conn.execute(statement, args)
            rows = await cur.fetchall()
    else:
        qnorm = math.sqrt(sum(v * v for v in query))
        cur = await conn.execute(
            SEARCH_EXACT, {**args, "qnorm": qnorm, "filter": Jsonb(metadata_filter)}
        )
        rows = await cur.fetchall()
    return [
        {
            "id": r["item_id"],
            "text": r["text"],
            "metadata": r["metadata"],
            "score": None if r["score"] is None else round(float(r["score"]), 6),
        }
        for r in rows
    ]

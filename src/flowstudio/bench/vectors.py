"""`flowstudio bench --vectors`: retrieval latency and recall of the vector store, both search paths.

For each path it can reach — pgvector (HNSW) on an embedded PostgreSQL 18 started in a temporary
FLOWSTUDIO_HOME, and exact float8[] search on the configured database (or on the same embedded server
when the configured one is embedded) — it creates a throwaway database, migrates it, seeds `chunks`
clustered random unit vectors of `dims` dimensions in the store's own layout (store/vectors.py), runs
`queries` searches (top 10) and reports p50/p95 latency and recall@10 against the exact answer. Prints
a text table, or one JSON object with --json.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from typing import Any

import msgspec
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from flowstudio.settings import EMBEDDED, Settings
from flowstudio.store import vectors as store
from flowstudio.store.migrate import apply_migrations


def _vectors(n: int, dims: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    centers = [[rng.gauss(0, 1) for _ in range(dims)] for _ in range(max(1, n // 500))]
    out = []
    for _ in range(n):
        c = rng.choice(centers)
        v = [x + rng.gauss(0, 0.6) for x in c]
        norm = sum(x * x for x in v) ** 0.5
        out.append([x / norm for x in v])
    return out


async def _measure(url: str, chunks: int, dims: int, queries: int) -> dict[str, Any]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    try:
        cur = await conn.execute(
            "INSERT INTO users (email, name, roles) VALUES (%s, 'bench', ARRAY['editor'])"
            " RETURNING id",
            (f"bench-{uuid.uuid4().hex[:8]}@example.invalid",),
        )
        user = await cur.fetchone()
        assert user is not None
        owner = user["id"]
        coll = await store.ensure_collection(conn, str(owner), "bench", "bench:random", dims)
        pgvector = await store.uses_pgvector(conn)
        if pgvector:  # bulk load first, then build the index (as an import would)
            await conn.execute(f"DROP INDEX IF EXISTS vector_items_hnsw_{int(coll['id'])}")
        data = _vectors(chunks, dims, seed=1)
        t0 = time.monotonic()
        for start in range(0, chunks, 2000):
            rows: list[tuple[Any, ...]] = [
                (f"c{i}", f"chunk {i}", {}, data[i])
                for i in range(start, min(chunks, start + 2000))
            ]
            await store.upsert_items(conn, coll["id"], rows)
        seed_s = time.monotonic() - t0
        t0 = time.monotonic()
        if pgvector:
            await store.create_hnsw_index(conn, coll["id"], dims)
        index_s = time.monotonic() - t0
        await conn.execute("ANALYZE vector_items")
        rng = random.Random(2)
        probes = [[x + rng.gauss(0, 0.05) for x in rng.choice(data)] for _ in range(queries)]
        latencies, recalls = [], []
        for q in probes:
            t = time.monotonic()
            got = await store.search(conn, coll, q, 10, {}, None)
            latencies.append((time.monotonic() - t) * 1000)
            truth = await store.search(conn, coll, q, 10, {}, None, exact=True)
            recalls.append(len({g["id"] for g in got} & {t["id"] for t in truth}) / 10)
        latencies.sort()
        return {
            "path": "pgvector-hnsw" if await store.uses_pgvector(conn) else "exact",
            "chunks": chunks,
            "dims": dims,
            "seed_s": round(seed_s, 1),
            "index_s": round(index_s, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
            "recall_at_10": round(statistics.mean(recalls), 3),
        }
    finally:
        await conn.close()


async def _with_database(server_url: str, settings: Settings, fn: Any) -> dict[str, Any]:
    name = f"fs_vbench_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(server_url, dbname="postgres")
    url = make_conninfo(server_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        await apply_migrations(msgspec.structs.replace(settings, database_url=url))
        return dict(await fn(url))
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def bench_vectors(
    settings: Settings, embedded_url: str | None, chunks: int, dims: int, queries: int
) -> list[dict[str, Any]]:
    results = []

    async def run(url: str) -> dict[str, Any]:
        return await _measure(url, chunks, dims, queries)

    targets = [u for u in (embedded_url, settings.database_url) if u and u != EMBEDDED]
    for url in dict.fromkeys(targets):
        results.append(await _with_database(url, settings, run))
    if len({r["path"] for r in results}) == 1 and embedded_url:
        # one server with pgvector: measure the exact path there too, for the comparison
        store._PGVECTOR.clear()
        results.append(
            await _with_database(embedded_url, settings, _exact_only(chunks, dims, queries))
        )
    return results


def _exact_only(chunks: int, dims: int, queries: int) -> Any:
    async def run(url: str) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE vector_items DROP COLUMN IF EXISTS embedding_v")
        store._PGVECTOR.clear()
        return await _measure(url, chunks, dims, queries)

    return run


def temporary_home() -> str:
    return tempfile.mkdtemp(prefix="fs-vbench-")


def run_vector_bench(
    settings: Settings, chunks: int, dims: int, queries: int, as_json: bool
) -> int:
    """The CLI entry: starts a throwaway embedded PostgreSQL for the pgvector path when it can."""
    import json
    import logging
    import os
    import shutil
    import sys

    from flowstudio.runtime import run_async

    log = logging.getLogger(__name__)
    if chunks < 100 or dims < 2 or queries < 1:
        sys.stderr.write("flowstudio: error: need --chunks >= 100, --dims >= 2, --queries >= 1\n")
        return 2
    home = temporary_home()
    previous = os.environ.get("FLOWSTUDIO_HOME")
    embedded_url: str | None = None
    try:
        os.environ["FLOWSTUDIO_HOME"] = home
        try:
            from flowstudio.home import start_embedded_postgres

            embedded_url = start_embedded_postgres()
        except Exception as exc:  # no embedded server here: measure what the configured one has
            log.warning("embedded PostgreSQL unavailable (%s): pgvector path not measured", exc)
        results = run_async(lambda: bench_vectors(settings, embedded_url, chunks, dims, queries))
    finally:
        if previous is None:
            os.environ.pop("FLOWSTUDIO_HOME", None)
        else:
            os.environ["FLOWSTUDIO_HOME"] = previous
    if as_json:
        sys.stdout.write(json.dumps({"vectors": results}) + "\n")
    else:
        for r in results:
            log.info(
                "%-14s %7d chunks x %d dims: search p50 %.2f ms, p95 %.2f ms, recall@10 %.3f "
                "(seeded in %.1fs, index built in %.1fs)",
                r["path"],
                r["chunks"],
                r["dims"],
                r["p50_ms"],
                r["p95_ms"],
                r["recall_at_10"],
                r["seed_s"],
                r["index_s"],
            )
    if embedded_url is None:
        shutil.rmtree(home, ignore_errors=True)
    # with a server, its atexit handler stops it; the temporary home is left for it (under /tmp)
    return 0

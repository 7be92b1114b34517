"""PostgreSQL's commit ceiling with and without a NOTIFY in each transaction (migration 0034's why).

`python bench/notify_ceiling.py [--connections 1 4 16] [--seconds 3] [--rounds 2]` (needs
DATABASE_URL): for each connection count, N threads each commit `INSERT` (+ `pg_notify`) in a loop
for `--seconds`, alternating without and with the NOTIFY, `--rounds` times; it logs tx/s for each.
A NOTIFYing commit holds one database-wide lock through its WAL flush, so those commits cannot
share a flush: the gap grows with the connections. The scratch table is dropped at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import psycopg

log = logging.getLogger("notify_ceiling")
TABLE = "bench_notify_ceiling"


def tx_per_s(url: str, connections: int, notify: bool, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * connections

    def commit_loop(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < stop:
                with conn.transaction():
                    conn.execute(f"INSERT INTO {TABLE} (n) VALUES (1)")
                    if notify:
                        conn.execute("SELECT pg_notify('bench_notify_ceiling', %s)", (str(i),))
                counts[i] += 1

    threads = [threading.Thread(target=commit_loop, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        log.error("DATABASE_URL is not set")
        return 2
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, n int)")
    try:
        for n in args.connections:
            for _ in range(args.rounds):
                plain = tx_per_s(url, n, False, args.seconds)
                notifying = tx_per_s(url, n, True, args.seconds)
                log.info(
                    "%3d connections: %7.0f tx/s without NOTIFY, %7.0f with", n, plain, notifying
                )
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

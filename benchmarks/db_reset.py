"""Clean data per test: ``--sandbox-db-reset=truncate`` on a 30-table schema, against its peers.

    python benchmarks/db_reset.py [--runs 30] [--tables 30]

Each round writes a few rows into every table (as a test that commits would), then empties
them. Measured per reset:

- ``TableReset.run()`` (ours): one ``DO`` block that finds the dirty tables and empties them
  (``DELETE`` + ``setval`` for small tables, ``TRUNCATE ... RESTART IDENTITY`` for big ones),
  with every table dirty and with 3 of them dirty (a typical test);
- peer 1: ``DROP DATABASE ... WITH (FORCE)`` + ``CREATE DATABASE ... TEMPLATE`` from a migrated
  template (what ``db_isolation("database")`` does per test, and the usual "fresh db" recipe);
- peer 2: ``DELETE FROM`` every table + ``setval`` of every sequence (what hand-written
  fixtures often do).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.postgres.reset import TableReset
from pytest_livesandbox.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent


def schema(tables: int) -> str:
    """``tables`` tables, each with a serial key; every other one references the previous."""
    parts = []
    for i in range(tables):
        ref = f", parent bigint REFERENCES t{i - 1}(id)" if i % 2 and i else ""
        parts.append(f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL{ref});")
    parts.append("CREATE TABLE alembic_version (version_num text PRIMARY KEY);")
    parts.append("INSERT INTO alembic_version VALUES ('head');")
    return "\n".join(parts)


def fill(conn: psycopg.Connection[tuple[object, ...]], tables: int, only: int = 0) -> None:
    for i in range(only or tables):
        if i % 2 and i:
            conn.execute(
                sql.SQL("INSERT INTO {} (name, parent) SELECT 'x', id FROM {} LIMIT 3").format(
                    sql.Identifier(f"t{i}"), sql.Identifier(f"t{i - 1}")
                )
            )
        else:
            conn.execute(
                sql.SQL("INSERT INTO {} (name) VALUES ('a'), ('b'), ('c')").format(
                    sql.Identifier(f"t{i}")
                )
            )


def delete_all(conn: psycopg.Connection[tuple[object, ...]], tables: int) -> None:
    with conn.transaction():
        for i in reversed(range(tables)):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(f"t{i}")))
            conn.execute("SELECT setval(%s, 1, false)", (f"t{i}_id_seq",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tables", type=int, default=30)
    args = parser.parse_args()
    cfg = SandboxConfig.from_sources(
        cli={"backend": "local", "fault_proxy": False}, env={}, ini={}, rootdir=REPO
    )
    with Sandbox(cfg) as sandbox:
        db = sandbox.info.db
        assert db is not None
        admin = db.url(admin=True)
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(schema(args.tables))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE tpl TEMPLATE {}").format(sql.Identifier(db.dbname))
            )
        reset = TableReset(admin, keep=("alembic_version",))
        ours, ours_few, clone, delete = [], [], [], []
        with (
            psycopg.connect(db.dsn, autocommit=True) as app,
            psycopg.connect(admin, autocommit=True) as server,
        ):
            for _ in range(args.runs):
                fill(app, args.tables)
                ours.append(reset.run())
                assert app.execute("SELECT count(*) FROM t0").fetchone() == (0,)
                assert app.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)

                fill(app, args.tables, only=3)  # a typical test: a few tables touched
                ours_few.append(reset.run())

                fill(app, args.tables)
                began = time.perf_counter()
                delete_all(app, args.tables)
                delete.append(time.perf_counter() - began)

                began = time.perf_counter()
                server.execute("DROP DATABASE IF EXISTS scratch WITH (FORCE)")
                server.execute("CREATE DATABASE scratch TEMPLATE tpl")
                clone.append(time.perf_counter() - began)
            server.execute("DROP DATABASE IF EXISTS scratch WITH (FORCE)")
        reset.close()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms"

    ratio_clone = statistics.median(clone) / statistics.median(ours)
    ratio_delete = statistics.median(delete) / statistics.median(ours)
    body = (
        f"{args.tables} tables (serial keys, foreign keys between pairs), 3 rows each, "
        f"{args.runs} rounds, median per reset, embedded PostgreSQL (1-minute load average "
        f"{os.getloadavg()[0]:.1f} on a shared machine):\n\n"
        "| reset | median | ratio |\n|---|---|---|\n"
        f"| `TableReset.run()`, every table dirty (one `DO` block: dirty check, `DELETE`, "
        f"`setval`) | {ms(ours)} | 1.0 |\n"
        f"| `TableReset.run()`, 3 of {args.tables} tables dirty (a typical test) "
        f"| {ms(ours_few)} | {statistics.median(ours_few) / statistics.median(ours):.1f}x |\n"
        f"| peer: `DROP DATABASE` + `CREATE DATABASE ... TEMPLATE` | {ms(clone)} | "
        f"{ratio_clone:.1f}x |\n"
        f"| peer: `DELETE FROM` every table + `setval` every sequence | {ms(delete)} | "
        f"{ratio_delete:.1f}x |\n\n"
        "`python benchmarks/db_reset.py`"
    )
    print(body)
    write_section("Clean data per test (db_reset)", body)


if __name__ == "__main__":
    main()

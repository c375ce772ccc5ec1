"""Put a reused sandbox's database back into its post-startup state (``--sandbox-reuse``).

Three ways, measured by ``benchmarks/warm_start.py`` at 30 tables (see docs/benchmarks.md):

- :class:`DeleteReset` (the default, :data:`DEFAULT_RESET`): like truncation, but only the
  tables holding rows are emptied, with ``DELETE`` (no new files), foreign keys off for the
  transaction.
- :class:`TruncateReset`: at snapshot, the rows the app's start-up left (seed data) and every
  sequence's position are copied into the schema ``livesandbox_snapshot``; a reset is one
  ``TRUNCATE ... RESTART IDENTITY CASCADE`` of every table, the seed rows copied back and the
  sequences set. The app keeps its connections.
- :class:`CloneReset`: at snapshot, ``CREATE DATABASE livesandbox_snapshot TEMPLATE app``; a
  reset drops the app database (``WITH (FORCE)``: the app's sessions end) and clones it back.
  Exact for anything (functions, extensions, large objects) but slower, and the app must
  reconnect.

Both run as the admin role::

    reset = DEFAULT_RESET()
    reset.snapshot(info.db)          # once, right after the sandbox became ready
    reset.restore(info.db)           # every time a run reuses it
"""

from __future__ import annotations

from typing import Protocol

import psycopg
from psycopg import sql

from ..errors import SandboxError
from ..info import DatabaseInfo

SNAPSHOT = "livesandbox_snapshot"
_SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", SNAPSHOT)
Connection = psycopg.Connection[tuple[object, ...]]


class DatabaseReset(Protocol):
    """A snapshot of the app database's state and the way back to it."""

    def snapshot(self, db: DatabaseInfo) -> None:
        """Record the current state (right after start-up)."""

    def restore(self, db: DatabaseInfo) -> None:
        """Return the app database to the recorded state."""


def _admin(db: DatabaseInfo, dbname: str | None = None) -> Connection:
    return psycopg.connect(db.url(admin=True, dbname=dbname), autocommit=True, connect_timeout=10)


def _tables(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname <> ALL(%s) "
        "ORDER BY schemaname, tablename",
        (list(_SKIP_SCHEMAS),),
    ).fetchall()
    return [(str(schema), str(table)) for schema, table in rows]


def _copy_name(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(SNAPSHOT, f"{schema}.{table}")


class TruncateReset:
    """Truncate every table, copy the seed rows back, set the sequences (see module doc)."""

    lock_timeout = "5s"

    def snapshot(self, db: DatabaseInfo) -> None:
        """Copy non-empty tables and every sequence position into ``livesandbox_snapshot``."""
        with _admin(db) as conn, conn.transaction():
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SNAPSHOT))
            )
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SNAPSHOT)))
            for schema, table in _tables(conn):
                source = sql.Identifier(schema, table)
                if conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(source)).fetchone():
                    conn.execute(
                        sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                            _copy_name(schema, table), source
                        )
                    )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} AS SELECT schemaname, sequencename, last_value, start_value "
                    "FROM pg_sequences WHERE schemaname <> ALL(%s)"
                ).format(sql.Identifier(SNAPSHOT, "_sequences")),
                (list(_SKIP_SCHEMAS),),
            )

    def restore(self, db: DatabaseInfo) -> None:
        """One transaction: truncate all, reload seeds, set sequences (locks: 5 s at most)."""
        with _admin(db) as conn, conn.transaction():
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(self.lock_timeout))
            )
            tables = _tables(conn)
            if tables:
                names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
                conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))
            _reload(conn, tables, _seed_tables(conn))
            _set_sequences(conn)


class DeleteReset(TruncateReset):
    """Like :class:`TruncateReset`, but ``DELETE`` only the tables that have rows.

    ``TRUNCATE`` makes new files for every table and index it touches; after a test run most
    tables are empty or hold a few rows, and deleting those rows (foreign keys off for the
    transaction: ``session_replication_role = replica``) costs less than new files.
    """

    def restore(self, db: DatabaseInfo) -> None:
        """One transaction: delete rows of non-empty tables, reload seeds, set sequences."""
        with _admin(db) as conn, conn.transaction():
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(self.lock_timeout))
            )
            conn.execute("SET LOCAL session_replication_role = replica")
            tables = _tables(conn)
            seeds = _seed_tables(conn)
            if tables:
                probes = sql.SQL(" UNION ALL ").join(
                    sql.SQL("SELECT {} WHERE EXISTS (SELECT 1 FROM {})").format(
                        sql.Literal(i), sql.Identifier(s, t)
                    )
                    for i, (s, t) in enumerate(tables)
                )
                dirty = {int(str(i)) for (i,) in conn.execute(probes)}
                for i, (schema, table) in enumerate(tables):
                    if i in dirty or f"{schema}.{table}" in seeds:
                        conn.execute(
                            sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table))
                        )
            _reload(conn, tables, seeds)
            _set_sequences(conn)


def _seed_tables(conn: Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (SNAPSHOT,))
    return {str(name) for (name,) in rows}


def _reload(conn: Connection, tables: list[tuple[str, str]], seeds: set[str]) -> None:
    """Copy the snapshot's seed rows back into their (empty) tables."""
    for schema, table in tables:
        if f"{schema}.{table}" not in seeds:
            continue
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
        cols = sql.SQL(", ").join(sql.Identifier(str(c)) for (c,) in columns)
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
                sql.Identifier(schema, table), cols, cols, _copy_name(schema, table)
            )
        )


def _set_sequences(conn: Connection) -> None:
    """Every sequence back to where the snapshot found it (unused ones to their start)."""
    try:
        sequences = conn.execute(
            sql.SQL("SELECT schemaname, sequencename, last_value, start_value FROM {}").format(
                sql.Identifier(SNAPSHOT, "_sequences")
            )
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise SandboxError(
            "the reused sandbox's database has no snapshot (livesandbox_snapshot); "
            "it cannot be reset: remove it with `livesandbox down ID`"
        ) from None
    calls = []
    for seq_schema, seq_name, last, start in sequences:
        seq = sql.Literal(sql.Identifier(str(seq_schema), str(seq_name)).as_string(conn))
        if last is None:
            calls.append(sql.SQL("setval({}::regclass, {}, false)").format(seq, sql.Literal(start)))
        else:
            calls.append(sql.SQL("setval({}::regclass, {}, true)").format(seq, sql.Literal(last)))
    if calls:
        conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(calls))


class CloneReset:
    """Clone the app database from a template copy made at snapshot (see module doc)."""

    def snapshot(self, db: DatabaseInfo) -> None:
        """``CREATE DATABASE livesandbox_snapshot TEMPLATE <app db>`` (ends the app's sessions)."""
        with _admin(db, "template1") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SNAPSHOT))
            )
            self._clone(conn, db.dbname, SNAPSHOT, db.user)

    def restore(self, db: DatabaseInfo) -> None:
        """Drop the app database (its sessions end) and clone it from the snapshot."""
        with _admin(db, "template1") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.dbname))
            )
            self._clone(conn, SNAPSHOT, db.dbname, db.user)

    @staticmethod
    def _clone(conn: Connection, source: str, name: str, owner: str) -> None:
        ident = sql.Identifier(source)
        # No session may use the source while it is copied: refuse new ones, end the others.
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
        try:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (source,),
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), ident, sql.Identifier(owner)
                )
            )
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident))


RESETS: dict[str, type[DeleteReset] | type[TruncateReset] | type[CloneReset]] = {
    "delete": DeleteReset,
    "truncate": TruncateReset,
    "clone": CloneReset,
}
#: What a reused sandbox gets (the fastest at 30 tables, benchmarks/warm_start.py).
DEFAULT_RESET = DeleteReset

"""Put the app database back: emptied after a test, or to its post-startup rows on reuse.

``db_reset`` empties the tables a test dirtied; ``--sandbox-reuse`` brings a warm sandbox's
database back to the rows its start-up left. Both run the same server-side reset.

**The reset.** One ``DO`` block, one round trip: every ordinary and partitioned table outside
the system schemas (and our snapshot schema), minus a ``keep`` list, that a test dirtied (a row
left, or an owned sequence that moved) is emptied and its identities restarted; small tables by
``DELETE`` (foreign-key triggers off for the transaction), big ones by ``TRUNCATE ... RESTART
IDENTITY CASCADE``. The table list is read from the catalog every time, so tables a test or the
app created are emptied too. ``lock_timeout`` bounds the wait for a connection that holds a lock
(an idle transaction): the reset fails with the holder named instead of hanging the run.

**Per test**, ``--sandbox-db-reset=truncate`` (every test) or ``@pytest.mark.db_reset`` (that
test), keeping the migration tool's bookkeeping (``alembic_version``, ``django_migrations``, ...,
``--sandbox-db-reset-keep``); the connection is kept between resets. Under xdist a resetting test
holds the sandbox lock exclusively (``chaos/lock.py``), so it never deletes another test's rows::

    reset = TableReset(admin_dsn, keep=("alembic_version",))
    seconds = reset.run()          # milliseconds on a 30-table schema (benchmarks/db_reset.py)

**Per reuse** (:class:`SnapshotReset`, the default :data:`DEFAULT_RESET`): right after the first
bring-up the rows the app's start-up left (seed data, migration bookkeeping) and every sequence's
position are copied into the schema ``livesandbox_snapshot``; a restore is one transaction: the
reset above, the seed rows copied back, the sequences set. The app keeps its connections.
:class:`CloneReset` (``CREATE DATABASE ... TEMPLATE``) is exact for anything but slower and ends
the app's sessions; ``benchmarks/warm_start.py`` measures both at 30 tables::

    reset = DEFAULT_RESET()
    reset.snapshot(info.db)          # once, right after the sandbox became ready
    reset.restore(info.db)           # every time a run reuses it
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

import psycopg
from psycopg import sql

from ..errors import SandboxError
from ..info import DatabaseInfo

RESET_MODES = ("none", "truncate")
LOCK_TIMEOUT = "5s"
SNAPSHOT = "livesandbox_snapshot"
_SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", SNAPSHOT)
Connection = psycopg.Connection[tuple[object, ...]]
# One round trip, all server-side: find the tables a test dirtied (a row left, or an owned
# sequence that moved), then empty only those: small ones by DELETE (with foreign-key triggers off
# for the transaction, so order does not matter; superuser only), big ones (and all of them
# without superuser) by one TRUNCATE ... RESTART IDENTITY CASCADE. TRUNCATE costs a new file per
# table and index, which is what made a blanket TRUNCATE of 30 tables take a quarter second.
_RESET = """
DO $reset$
DECLARE
    keep text[] := {keep};
    small_bytes bigint := {small_bytes};
    superuser boolean := current_setting('is_superuser') = 'on';
    r record;
    big text[] := '{{}}';
    has_rows boolean;
    moved boolean;
BEGIN
    IF superuser THEN
        PERFORM set_config('session_replication_role', 'replica', true);
    END IF;
    FOR r IN
        SELECT c.oid, n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> {snapshot}
    LOOP
        CONTINUE WHEN r.relname = ANY(keep) OR (r.nspname || '.' || r.relname) = ANY(keep);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', r.nspname, r.relname)
            INTO has_rows;
        SELECT coalesce(bool_or(pg_sequence_last_value(s.oid) IS NOT NULL), false) INTO moved
        FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE d.classid = 'pg_class'::regclass AND d.refobjid = r.oid
          AND d.deptype IN ('a', 'i');
        CONTINUE WHEN NOT (has_rows OR moved);
        IF superuser AND pg_total_relation_size(r.oid) <= small_bytes THEN
            IF has_rows THEN
                EXECUTE format('DELETE FROM %I.%I', r.nspname, r.relname);
            END IF;
            PERFORM setval(s.oid, q.seqstart, false)
            FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                JOIN pg_sequence q ON q.seqrelid = s.oid
            WHERE d.classid = 'pg_class'::regclass AND d.refobjid = r.oid
              AND d.deptype IN ('a', 'i');
        ELSE
            big := big || format('%I.%I', r.nspname, r.relname);
        END IF;
    END LOOP;
    IF cardinality(big) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(big, ', ') || ' RESTART IDENTITY CASCADE';
    END IF;
END
$reset$
"""
# Tables up to this size (heap + indexes + TOAST) are emptied by DELETE.
SMALL_TABLE_BYTES = 1 << 20


def reset_statement(keep: Iterable[str], small_bytes: int = SMALL_TABLE_BYTES) -> sql.Composed:
    """The one ``DO`` block a reset runs, with ``keep`` (``name`` or ``schema.name``) inlined.

    ``small_bytes``: tables up to this size are emptied by ``DELETE``, bigger ones truncated.

    >>> "'{alembic_version}'::text[]" in reset_statement(["alembic_version"]).as_string(None)
    True
    """
    keep_array = sql.SQL("{}::text[]").format(sql.Literal("{" + ",".join(keep) + "}"))
    return sql.SQL(_RESET).format(
        keep=keep_array, small_bytes=sql.Literal(small_bytes), snapshot=sql.Literal(SNAPSHOT)
    )


def _locked_out() -> SandboxError:
    return SandboxError(
        f"db reset: could not lock the app's tables within {LOCK_TIMEOUT}: a connection "
        "holds them (an idle transaction of the app, or a test's own connection still "
        "open). Close it before the test ends, or drop db_reset for this test."
    )


class TableReset:
    """Empties the app's tables on demand, after a test (see the module docstring)."""

    def __init__(self, dsn: str, keep: Iterable[str] = ()) -> None:
        self.dsn = dsn
        self.keep = tuple(keep)
        self._statement = reset_statement(self.keep)
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            self._conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        return self._conn

    def run(self) -> float:
        """Empty the tables now; return the seconds taken."""
        began = time.perf_counter()
        try:
            self._connection().execute(self._statement)
        except psycopg.errors.LockNotAvailable:
            self.close()
            raise _locked_out() from None
        except psycopg.OperationalError:
            self.close()  # the server went away (kill_db): reconnect next time
            raise
        return time.perf_counter() - began

    def close(self) -> None:
        """Close the kept connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()


class DatabaseReset(Protocol):
    """A snapshot of the app database's state and the way back to it (reuse)."""

    def snapshot(self, db: DatabaseInfo) -> None:
        """Record the current state (right after start-up)."""

    def restore(self, db: DatabaseInfo) -> None:
        """Return the app database to the recorded state."""


def _admin(db: DatabaseInfo, dbname: str | None = None) -> Connection:
    return psycopg.connect(db.url(admin=True, dbname=dbname), autocommit=True, connect_timeout=10)


def _copy_name(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(SNAPSHOT, f"{schema}.{table}")


class SnapshotReset:
    """Snapshot the seed rows and sequences; restore = the reset + seeds back (module doc)."""

    def __init__(self, small_bytes: int = SMALL_TABLE_BYTES) -> None:
        self._statement = reset_statement((), small_bytes)

    def snapshot(self, db: DatabaseInfo) -> None:
        """Copy non-empty tables and every sequence position into ``livesandbox_snapshot``."""
        with _admin(db) as conn, conn.transaction():
            schema_ = sql.Identifier(SNAPSHOT)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema_))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema_))
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
        """One transaction: the reset, the seed rows copied back, the sequences set."""
        with _admin(db) as conn:
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT))
                    )
                    conn.execute(self._statement)
                    _reload(conn)
                    _set_sequences(conn)
            except psycopg.errors.LockNotAvailable:
                raise _locked_out() from None


def _tables(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname <> ALL(%s) "
        "ORDER BY schemaname, tablename",
        (list(_SKIP_SCHEMAS),),
    ).fetchall()
    return [(str(schema), str(table)) for schema, table in rows]


def _reload(conn: Connection) -> None:
    """Copy the snapshot's seed rows back into their (now empty) tables."""
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (SNAPSHOT,))
    seeds = {str(name) for (name,) in rows}
    for schema, table in _tables(conn):
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
        value, called = (start, "false") if last is None else (last, "true")
        calls.append(
            sql.SQL("setval({}::regclass, {}, " + called + ")").format(seq, sql.Literal(value))
        )
    if calls:
        conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(calls))


class CloneReset:
    """Clone the app database from a template copy made at snapshot (see module doc)."""

    def snapshot(self, db: DatabaseInfo) -> None:
        """``CREATE DATABASE livesandbox_snapshot TEMPLATE <app db>`` (ends the app's sessions)."""
        with _admin(db, "template1") as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(SNAPSHOT)))
            self._clone(conn, db.dbname, SNAPSHOT, db.user)

    def restore(self, db: DatabaseInfo) -> None:
        """Drop the app database (its sessions end) and clone it from the snapshot."""
        with _admin(db, "template1") as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(db.dbname)))
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


#: What a reused sandbox gets (the fastest at 30 tables, benchmarks/warm_start.py).
DEFAULT_RESET = SnapshotReset

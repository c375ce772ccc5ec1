"""Clean data per test: empty every table the app owns, except the migration tool's bookkeeping.

``--sandbox-db-reset=truncate`` (every test) or ``@pytest.mark.db_reset`` (that test): after the
test, every ordinary and partitioned table outside the system schemas, minus the ``keep`` list
(``alembic_version``, ``django_migrations``, ... configurable with ``--sandbox-db-reset-keep``),
is emptied and its identities restarted: only the tables the test dirtied (a row left, or an
owned sequence that moved), found server-side in the same round trip; small tables by ``DELETE``
(foreign-key triggers off for that transaction), big ones by ``TRUNCATE ... RESTART IDENTITY
CASCADE``::

    reset = TableReset(admin_dsn, keep=("alembic_version",))
    seconds = reset.run()          # milliseconds on a 30-table schema (benchmarks/db_reset.py)

The table list is read from the catalog on every reset, so tables a test or the app created are
emptied too. The connection is kept between resets. ``lock_timeout`` bounds the
wait for an app connection that holds a lock (an idle transaction): the reset then fails with
the holder named instead of hanging the run.

Under xdist a resetting test holds the sandbox lock exclusively (see ``chaos/lock.py``): no
other test runs while its rows are written and removed, so the reset never deletes another
test's data mid-flight. Tests without a reset still run side by side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg
from psycopg import sql

from ..errors import SandboxError

RESET_MODES = ("none", "truncate")
LOCK_TIMEOUT = "5s"
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
          AND n.nspname NOT LIKE 'pg\\_%'
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


def reset_statement(keep: Iterable[str]) -> sql.Composed:
    """The one ``DO`` block a reset runs, with ``keep`` (``name`` or ``schema.name``) inlined.

    >>> "'{alembic_version}'::text[]" in reset_statement(["alembic_version"]).as_string(None)
    True
    """
    keep_array = sql.SQL("{}::text[]").format(sql.Literal("{" + ",".join(keep) + "}"))
    return sql.SQL(_RESET).format(keep=keep_array, small_bytes=sql.Literal(SMALL_TABLE_BYTES))


class TableReset:
    """Truncates the app's tables on demand (see the module docstring)."""

    def __init__(self, dsn: str, keep: Iterable[str] = ()) -> None:
        self.dsn = dsn
        self.keep = tuple(keep)
        self._statement = reset_statement(self.keep)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
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
            raise SandboxError(
                f"db reset: could not lock the app's tables within {LOCK_TIMEOUT}: a connection "
                "holds them (an idle transaction of the app, or a test's own connection still "
                "open). Close it before the test ends, or drop db_reset for this test."
            ) from None
        except psycopg.OperationalError:
            self.close()  # the server went away (kill_db): reconnect next time
            raise
        return time.perf_counter() - began

    def close(self) -> None:
        """Close the kept connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()

"""Per-test database isolation (the *janitor*).

- :class:`TransactionJanitor` (default, ~0.2 ms a test): one connection per process; each test runs
  inside a transaction that is always rolled back. ``commit()`` inside it raises, so nothing leaks.
- :class:`DatabaseCloner` (``@pytest.mark.db_isolation("database")`` or ``live_db_factory``): a
  fresh database per test, cloned from a template that holds the app database's migrated schema;
  dropped after the test. For code that commits or uses several connections.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from filelock import FileLock
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..errors import SandboxError
from ..info import DatabaseInfo
from .embedded import PostgresBinaries
from .reset import SNAPSHOT

TEMPLATE_DB = "livesandbox_template"
Connection = psycopg.Connection[tuple[object, ...]]


class TransactionJanitor:
    """Hands out the process's connection inside a rolled-back transaction per test."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        """The shared connection, reopened if a previous test broke or closed it."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=False)
        elif self._conn.info.transaction_status != TransactionStatus.IDLE:
            self._conn.rollback()
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield the connection in a transaction that is rolled back however the test ends.

        A pooled connection whose server went away since the last test (a ``kill_db`` chaos
        test, a restarted database) is not ``broken`` until used: when ``BEGIN`` fails on it,
        the janitor reconnects once instead of failing the test.
        """
        try:
            with ExitStack() as stack:
                try:
                    conn = self.connection()
                    stack.enter_context(conn.transaction(force_rollback=True))
                except psycopg.OperationalError:
                    self.close()
                    conn = self.connection()
                    stack.enter_context(conn.transaction(force_rollback=True))
                yield conn
        except psycopg.Error:
            # The test left the connection unusable (closed, broken): start afresh next time.
            self.close()
            raise

    def close(self) -> None:
        """Close the shared connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()


@dataclass(frozen=True)
class IsolatedDatabase:
    """A database made for one test; ``dsn`` connects as the app role (its owner)."""

    name: str
    dsn: str

    def connect(self, **kwargs: object) -> Connection:
        """A new connection to this database (autocommit off unless given)."""
        return psycopg.connect(self.dsn, **kwargs)  # type: ignore[arg-type]


class DatabaseCloner:
    """Makes and drops per-test databases from a template of the app database's schema."""

    def __init__(self, db: DatabaseInfo, lock_path: Path) -> None:
        self.db = db
        self.lock_path = lock_path

    def _admin(self) -> Connection:
        return psycopg.connect(self.db.url(admin=True), autocommit=True)

    def ensure_template(self) -> None:
        """Create the template once per sandbox (a file lock serialises xdist workers)."""
        with FileLock(str(self.lock_path)), self._admin() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,)
            ).fetchone()
            if exists:
                return
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template1").format(
                    sql.Identifier(TEMPLATE_DB), sql.Identifier(self.db.user)
                )
            )
            try:
                self._copy_schema()
            except BaseException:
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
                raise

    def _client_args(self, dbname: str, *, admin: bool) -> list[str]:
        user = self.db.admin_user if admin else self.db.user
        return ["--host", self.db.host, "--port", str(self.db.port), "--username", user, dbname]

    def _client_env(self, *, admin: bool) -> dict[str, str]:
        # The password goes through the environment, never the command line (visible in ps).
        password = self.db.admin_password if admin else self.db.password
        return {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}

    def _copy_schema(self) -> None:
        binaries = PostgresBinaries.locate(None)
        dump = subprocess.run(
            [
                str(binaries.tool("pg_dump")),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                f"--exclude-schema={SNAPSHOT}",  # the reuse snapshot stays out of test databases
                *self._client_args(self.db.dbname, admin=True),
            ],
            env=self._client_env(admin=True),
            capture_output=True,
            check=False,
        )
        if dump.returncode != 0:
            raise SandboxError(
                "could not copy the app database's schema for database isolation "
                f"(pg_dump exit {dump.returncode}): {dump.stderr.decode(errors='replace')[-500:]}"
            )
        restore = subprocess.run(
            [
                str(binaries.tool("psql")),
                "--quiet",
                "--no-psqlrc",
                "-v",
                "ON_ERROR_STOP=1",
                *self._client_args(TEMPLATE_DB, admin=False),
            ],
            env=self._client_env(admin=False),
            # pg_dump >= 17 always emits this setting; older servers (a postgres:15 container)
            # reject it, and it only matters for dumps that take longer than a timeout.
            input=dump.stdout.replace(b"SET transaction_timeout = 0;\n", b""),
            capture_output=True,
            check=False,
        )
        if restore.returncode != 0:
            raise SandboxError(
                "could not load the schema into the isolation template "
                f"(psql exit {restore.returncode}): "
                f"{restore.stderr.decode(errors='replace')[-500:]}"
            )

    def create(self, label: str = "t") -> IsolatedDatabase:
        """A new database cloned from the template, owned by the app role."""
        self.ensure_template()
        name = f"lsb_{label}_{secrets.token_hex(4)}"[:63]
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE_DB), sql.Identifier(self.db.user)
                )
            )
        return IsolatedDatabase(name, self.db.url(dbname=name))

    def drop(self, database: IsolatedDatabase) -> None:
        """Drop a database made by :meth:`create`, closing its connections."""
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(database.name)
                )
            )


ISOLATION_MODES = ("transaction", "database")


def validate_db_isolation(args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
    """Check ``@pytest.mark.db_isolation(mode)`` arguments; return the mode.

    >>> validate_db_isolation(("database",), {})
    'database'
    """
    from ..errors import MarkerError

    unknown = set(kwargs) - {"mode"}
    if unknown:
        raise MarkerError(f"db_isolation got unknown argument(s) {sorted(unknown)}; use mode=")
    values = list(args) + ([kwargs["mode"]] if "mode" in kwargs else [])
    if len(values) != 1 or values[0] not in ISOLATION_MODES:
        raise MarkerError(
            f"db_isolation{tuple(values)!r}: mode must be one of {', '.join(ISOLATION_MODES)}"
        )
    return str(values[0])

"""Real PostgreSQL roles for one test, and an audit of what a role may do (every backend).

Everything is done with the sandbox's admin DSN (:attr:`DatabaseInfo.admin_user`), so it works
wherever the plugin made the database: local, docker, kube, gke. A role lives for one test:
:meth:`RoleMaker.make` creates it (``LOGIN`` with a random password, or ``NOLOGIN``), grants the
privileges asked for on tables of the test's database, sets its row-level-security settings
(``ALTER ROLE ... IN DATABASE ... SET app.tenant_id = 'a'``) and opens a connection as it;
:meth:`RoleMaker.drop_all` ends its sessions, revokes what it holds and drops it::

    maker = RoleMaker(info.db, dbname="app", label="gw0")
    role = maker.make("tenant_a", grants={"notes": "SELECT"}, rls_settings={"app.tenant_id": "a"})
    role.conn.execute("SELECT * FROM notes")      # only tenant a's rows, if the policy is right
    maker.drop_all()

Bad input is refused before anything is created (:class:`~..errors.RoleError`): an unknown
privilege, a table that does not exist in that database, a setting name that is not a name.

What a role may do afterwards is :func:`~.audit.audit_role`'s job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..errors import RoleError
from ..info import DatabaseInfo, SecretUrl

#: Table privileges PostgreSQL knows (``ALL`` = every one of them).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
ROLE_PREFIX = "lsb_"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,29}$")
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
Grants = Mapping[str, str | tuple[str, ...] | list[str]]
#: SCRAM iterations of a test role's (random, one-test) password: 4096, PostgreSQL's default,
#: costs ~8 ms at CREATE ROLE and again at each login; the role lives for one test.
SCRAM_ITERATIONS = 16


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$...`` secret PostgreSQL stores for ``password`` (RFC 5802/7677).

    Handing it to ``CREATE ROLE ... PASSWORD`` stores it as is, with our iteration count.

    >>> scram_verifier("pw", b"0123456789abcdef", 16).split("$")[1].split(":")[0]
    '16'
    """
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def parse_privileges(table: str, value: object) -> tuple[str, ...]:
    """``"SELECT, INSERT"`` (or a list) -> ``("SELECT", "INSERT")``; unknown names are refused.

    >>> parse_privileges("items", "select, insert")
    ('SELECT', 'INSERT')
    >>> parse_privileges("items", "ALL")
    ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
    """
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(part).strip() for part in value]
    else:
        raise RoleError(
            f"grants[{table!r}]={value!r}: give privileges as a string, e.g. 'SELECT, INSERT'"
        )
    names = [" ".join(item.upper().split()) for item in items if item]
    if not names:
        raise RoleError(f"grants[{table!r}] is empty; give e.g. 'SELECT'")
    if names in (["ALL"], ["ALL PRIVILEGES"]):
        return TABLE_PRIVILEGES
    unknown = [name for name in names if name not in TABLE_PRIVILEGES]
    if unknown:
        raise RoleError(
            f"grants[{table!r}]: unknown privilege(s) {', '.join(map(repr, unknown))}; "
            f"table privileges are {', '.join(TABLE_PRIVILEGES)} or ALL"
        )
    return tuple(dict.fromkeys(names))


def check_role_request(name: str, grants: Grants, rls_settings: Mapping[str, object]) -> None:
    """Refuse a bad name, privilege or setting before touching the database."""
    if not _NAME.match(name):
        raise RoleError(
            f"role name {name!r}: use lower-case letters, digits and '_' (at most 30 "
            "characters, not starting with a digit), e.g. 'tenant_a'"
        )
    for table, privileges in grants.items():
        parse_privileges(table, privileges)
    for key, value in rls_settings.items():
        if not _SETTING.match(key):
            raise RoleError(
                f"rls_settings key {key!r} is not a setting name; use e.g. 'app.tenant_id'"
            )
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise RoleError(f"rls_settings[{key!r}]={value!r}: give a string (or a number)")


@dataclass
class DbRole:
    """A role made for one test: its real ``name``, a connection as it and its DSN.

    ``conn`` is an autocommit psycopg connection as the role to ``database`` (``None`` for a
    ``login=False`` role); ``dsn`` hides its password when shown, like ``live_dsn``.
    """

    name: str
    database: str
    grants: dict[str, tuple[str, ...]]
    rls_settings: dict[str, str]
    login: bool
    dsn: str | None = field(default=None, repr=False)
    conn: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _extra: list[psycopg.Connection[Any]] = field(default_factory=list, repr=False)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Another connection as this role (closed when the role is dropped)."""
        if self.dsn is None:
            raise RoleError(f"role {self.name!r} was made with login=False: it cannot connect")
        conn = psycopg.connect(self.dsn, **kwargs)
        self._extra.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection handed out for this role."""
        for conn in [self.conn, *self._extra]:
            if conn is not None and not conn.closed:
                conn.close()


class RoleMaker:
    """Makes roles in one database of a sandbox and drops every one of them afterwards."""

    def __init__(
        self,
        db: DatabaseInfo,
        dbname: str,
        label: str = "",
        admin: psycopg.Connection[Any] | None = None,
    ) -> None:
        if not db.admin_user:
            raise RoleError(
                "this sandbox gives no admin (superuser) connection, which making roles needs"
            )
        self.db = db
        self.dbname = dbname
        self.label = re.sub(r"[^a-z0-9]", "", label.lower())[:8]
        self.made: list[DbRole] = []
        # A shared admin connection (the caller's, kept open) or one of our own (closed by us).
        self._shared = admin
        self._conn: psycopg.Connection[Any] | None = None

    def _admin(self) -> psycopg.Connection[Any]:
        """One autocommit superuser connection to the roles' database, kept until drop_all."""
        if self._shared is not None and not self._shared.closed and not self._shared.broken:
            return self._shared
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.db.url(admin=True, dbname=self.dbname), autocommit=True, connect_timeout=10
            )
        return self._conn

    def unique_name(self, name: str) -> str:
        """``tenant_a`` -> ``lsb_tenant_a_gw0_3f9c2a`` (unique across workers and runs)."""
        label = f"_{self.label}" if self.label else ""
        return f"{ROLE_PREFIX}{name}{label}_{secrets.token_hex(3)}"

    def make(
        self,
        name: str = "role",
        *,
        grants: Grants | None = None,
        rls_settings: Mapping[str, object] | None = None,
        login: bool = True,
    ) -> DbRole:
        """Create the role, grant, set its settings and (``login``) connect as it."""
        grants = dict(grants or {})
        settings = {k: str(v) for k, v in (rls_settings or {}).items()}
        check_role_request(name, grants, rls_settings or {})
        privileges = {table: parse_privileges(table, value) for table, value in grants.items()}
        role = DbRole(self.unique_name(name), self.dbname, privileges, settings, login)
        password = secrets.token_hex(16)
        conn = self._admin()
        # Tables that get INSERT need their own sequences (bigserial ids): one query for them;
        # a table that does not exist fails the batch below (nothing is created then).
        inserts = [t for t, names in privileges.items() if "INSERT" in names]
        found = _tables_and_sequences(conn, inserts) if inserts else {}
        missing = [t for t in inserts if t not in found]
        if missing:
            raise self._no_tables(conn, missing)
        # One round trip: CREATE ROLE, the grants and the settings as one simple-protocol query.
        ident = sql.Identifier(role.name)
        statements: list[sql.Composable] = [
            sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                ident,
                sql.SQL("LOGIN" if login else "NOLOGIN"),
                sql.Literal(scram_verifier(password, secrets.token_bytes(16))),
            )
        ]
        for table, names in privileges.items():
            statements.append(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(n) for n in names), _table_ident(table), ident
                )
            )
            # bigserial ids: INSERT needs the table's own sequences too.
            for seq in found.get(table, []):
                statements.append(
                    sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                        sql.Identifier(*seq.split(".", 1)), ident
                    )
                )
        for key, value in settings.items():
            statements.append(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    ident,
                    sql.Identifier(self.dbname),
                    sql.SQL(".").join(sql.Identifier(p) for p in key.split(".")),
                    sql.Literal(value),
                )
            )
        try:
            # One implicit transaction: on any error nothing of it stays.
            conn.execute(sql.SQL("; ").join(statements))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            absent = [
                t for t in privileges if t not in _tables_and_sequences(conn, list(privileges))
            ]
            raise self._no_tables(conn, absent) from None
        self.made.append(role)  # from here on drop_all() removes it
        if login:
            role.dsn = SecretUrl(
                DatabaseInfo(self.db.host, self.db.port, self.dbname, role.name, password).url()
            )
            role.conn = psycopg.connect(role.dsn, autocommit=True, connect_timeout=10)
        return role

    def _no_tables(self, conn: psycopg.Connection[Any], missing: list[str]) -> RoleError:
        return RoleError(
            f"grants: no table {', '.join(map(repr, missing))} in database "
            f"{self.dbname!r}; its tables: {', '.join(_tables(conn)) or 'none'}"
        )

    def drop_all(self) -> list[str]:
        """Drop every role made here (sessions ended, privileges revoked); returns problems."""
        problems = []
        roles, self.made = self.made, []
        for role in reversed(roles):
            role.close()
            try:
                self._drop(role.name)
            except psycopg.Error as exc:
                problems.append(f"could not drop role {role.name!r}: {exc}".strip())
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return problems

    def _drop(self, name: str) -> None:
        try:
            conn = self._admin()
        except psycopg.OperationalError:
            # The test's database is gone (its clone dropped first): so are its grants.
            with psycopg.connect(self.db.url(admin=True), autocommit=True) as other:
                _drop_role(other, name, owned=False)
            return
        _drop_role(conn, name, owned=True)


def _drop_role(conn: psycopg.Connection[Any], name: str, *, owned: bool) -> None:
    """End the role's sessions, drop what it owns here (``owned``) and the role: one round trip.

    A role that is not there (its ``CREATE`` failed, or someone dropped it) is no problem.
    """
    role = sql.Identifier(name)
    statements: list[sql.Composable] = [
        sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}").format(
            sql.Literal(name)
        )
    ]
    if owned:
        # Privileges (and whatever the test let it create) in this database go with DROP OWNED.
        statements.append(sql.SQL("DROP OWNED BY {}").format(role))
    statements.append(sql.SQL("DROP ROLE {}").format(role))
    try:
        conn.execute(sql.SQL("; ").join(statements))
    except psycopg.errors.UndefinedObject:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def _table_ident(table: str) -> sql.Composable:
    return sql.Identifier(*table.split(".", 1)) if "." in table else sql.Identifier(table)


def _tables_and_sequences(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, list[str]]:
    """The tables of ``tables`` that exist -> their own sequences."""
    if not tables:
        return {}
    rows = conn.execute(
        "SELECT t.name, to_regclass(t.quoted) IS NOT NULL, ARRAY("
        " SELECT sn.nspname || '.' || s.relname FROM pg_depend d"
        " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
        " JOIN pg_namespace sn ON sn.oid = s.relnamespace"
        " WHERE d.refobjid = to_regclass(t.quoted) AND d.deptype IN ('a', 'i'))"
        " FROM unnest(%s::text[], %s::text[]) AS t(name, quoted)",
        (tables, [_quoted(t) for t in tables]),
    ).fetchall()
    return {str(name): [str(seq) for seq in seqs] for name, exists, seqs in rows if exists}


def _quoted(table: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in table.split(".", 1))


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT CASE WHEN schemaname = 'public' THEN tablename "
        "ELSE schemaname || '.' || tablename END FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]

"""What a role may do in a database: privileges and row-level security per table (any backend).

:func:`audit_role` answers from the catalog (``has_table_privilege``, ``pg_class``), so owners,
memberships and superusers count as PostgreSQL counts them::

    with psycopg.connect(info.db.url(admin=True)) as conn:
        audit = audit_role(conn, "app")
    assert audit.table("notes").rls_applies      # owners bypass row security unless FORCEd
    assert audit.privileges()["items"] >= {"SELECT", "INSERT"}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..errors import RoleError
from .grants import TABLE_PRIVILEGES


@dataclass(frozen=True)
class TableAccess:
    """What one role may do on one table."""

    table: str
    privileges: frozenset[str]
    rls: bool  # row-level security enabled on the table
    rls_forced: bool  # FORCE ROW LEVEL SECURITY: applies to the owner too
    owner: bool  # the role owns the table

    @property
    def rls_applies(self) -> bool:
        """Row-level security filters this role's rows (on, and forced if it is the owner)."""
        return self.rls and (self.rls_forced or not self.owner)


@dataclass(frozen=True)
class RoleAudit:
    """:func:`audit_role`'s answer: the role's attributes and its access per table."""

    role: str
    database: str
    superuser: bool
    bypass_rls: bool
    tables: tuple[TableAccess, ...]

    def table(self, name: str) -> TableAccess:
        """One table's entry (``KeyError`` naming the tables there are)."""
        for access in self.tables:
            if access.table == name:
                return access
        raise KeyError(f"{name!r} is not audited; tables: {[t.table for t in self.tables]}")

    def privileges(self) -> dict[str, set[str]]:
        """``{"items": {"SELECT", ...}, ...}`` for tables where the role has any privilege."""
        return {t.table: set(t.privileges) for t in self.tables if t.privileges}


def audit_role(conn: psycopg.Connection[Any], role: str) -> RoleAudit:
    """What ``role`` may do in ``conn``'s database (any user may ask; owners and RLS included)."""
    attrs = conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if attrs is None:
        raise RoleError(f"no role {role!r} in this PostgreSQL")
    checks = sql.SQL(", ").join(
        sql.SQL("has_table_privilege({}, c.oid, {})").format(sql.Literal(role), sql.Literal(p))
        for p in TABLE_PRIVILEGES
    )
    query = sql.SQL(
        "SELECT CASE WHEN n.nspname = 'public' THEN c.relname "
        "ELSE n.nspname || '.' || c.relname END, c.relrowsecurity, c.relforcerowsecurity, "
        "pg_get_userbyid(c.relowner) = {}, {} FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1"
    ).format(sql.Literal(role), checks)
    tables = []
    for row in conn.execute(query).fetchall():
        granted = frozenset(p for p, ok in zip(TABLE_PRIVILEGES, row[4:], strict=True) if ok)
        tables.append(TableAccess(str(row[0]), granted, bool(row[1]), bool(row[2]), bool(row[3])))
    dbname = conn.info.dbname
    return RoleAudit(role, dbname, bool(attrs[0]), bool(attrs[1]), tuple(tables))

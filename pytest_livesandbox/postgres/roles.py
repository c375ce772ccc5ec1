"""Role connection limits, done from any process with the sandbox's admin DSN (every backend).

:func:`limit_connections` / :func:`restore_connections`: ``ALTER ROLE app CONNECTION LIMIT``, then
the app's sessions (``application_name = livesandbox-app``, :data:`APP_SESSION_NAME`) are ended so
its pool reconnects under the limit. Other sessions of the role (a test's ``live_db``) are counted
on top, so ``max=N`` is what the *app* gets::

    undo = limit_connections(info, 1)
    ...
    restore_connections(info, undo)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..info import SandboxInfo

APP_SESSION_NAME = "livesandbox-app"


def admin_connect(info: SandboxInfo, timeout: float = 3) -> psycopg.Connection[Any]:
    """An autocommit superuser connection straight to PostgreSQL (never through the proxy)."""
    assert info.db is not None
    return psycopg.connect(
        info.db.url(admin=True),
        autocommit=True,
        connect_timeout=max(1, round(timeout)),
    )


def role_limit(info: SandboxInfo) -> int:
    """The app role's current connection limit (-1 = none)."""
    assert info.db is not None
    with admin_connect(info) as conn:
        row = conn.execute(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (info.db.user,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def limit_connections(info: SandboxInfo, limit: int) -> dict[str, Any]:
    """Let the app hold at most ``limit`` connections; returns the undo record + effect."""
    assert info.db is not None
    role = info.db.user
    with admin_connect(info) as conn:
        row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
        previous = int(row.fetchone()[0])  # type: ignore[index]
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND application_name <> %s",
            (role, APP_SESSION_NAME),
        ).fetchone()[0]  # type: ignore[index]
        total = limit + int(others)
        conn.execute(
            sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                sql.Identifier(role), sql.Literal(total)
            )
        )
        terminated = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = %s AND application_name = %s",
            (role, APP_SESSION_NAME),
        ).fetchone()[0]  # type: ignore[index]
    return {
        "role": role,
        "previous": previous,
        "role_limit": total,
        "other_sessions": int(others),
        "terminated": int(terminated),
    }


def restore_connections(info: SandboxInfo, undo: dict[str, Any]) -> None:
    """Put the role's previous connection limit back."""
    with admin_connect(info) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                sql.Identifier(undo["role"]), sql.Literal(int(undo["previous"]))
            )
        )

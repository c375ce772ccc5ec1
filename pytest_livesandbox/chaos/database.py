"""Database faults of the local backend, done from any process with the sandbox's admin DSN.

- :func:`limit_connections` / :func:`restore_connections`: ``ALTER ROLE app CONNECTION LIMIT``,
  then the app's sessions (``application_name = livesandbox-app``) are terminated so its pool
  reconnects under the limit. Other sessions of the role (a test's ``live_db``) are counted on
  top, so ``max=N`` is what the *app* gets.
- :func:`stop_postgres` / :func:`start_postgres`: fast shutdown (SIGINT) of the postmaster named
  in ``postmaster.pid``, and a restart with the same data folder, port and user::

    undo = limit_connections(info, 1)
    ...
    restore_connections(info, undo)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..errors import ChaosError
from ..postgres.embedded import PostgresBinaries, PostgresServer, RunAs
from ..sandbox import SandboxInfo

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


def postmaster_pid(info: SandboxInfo) -> int | None:
    """The running postmaster's pid, from ``postmaster.pid`` (``None`` when it is down)."""
    datadir = info.extra.get("postgres_datadir")
    if not datadir:
        raise ChaosError("this sandbox does not say where its PostgreSQL data lives")
    try:
        pid = int((Path(datadir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _running(pid) else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, OSError, IndexError):
        return False
    except PermissionError:
        return True
    return state != "Z"


def stop_postgres(info: SandboxInfo, timeout: float = 10.0) -> float:
    """Fast shutdown of PostgreSQL; returns the seconds it took to be fully down."""
    began = time.monotonic()
    pid = postmaster_pid(info)
    if pid is None:
        return 0.0
    os.kill(pid, signal.SIGINT)
    pidfile = Path(info.extra["postgres_datadir"]) / "postmaster.pid"
    while _running(pid) or pidfile.exists():
        if time.monotonic() - began > timeout:
            os.kill(pid, signal.SIGQUIT)
        if time.monotonic() - began > timeout + 5:
            raise ChaosError(f"PostgreSQL (pid {pid}) did not stop within {timeout + 5:g}s")
        if not _running(pid):
            break  # killed hard: the stale pid file is harmless, postgres replaces it
        time.sleep(0.01)
    return time.monotonic() - began


def start_postgres(info: SandboxInfo, timeout: float = 30.0) -> float:
    """Start PostgreSQL again on the same port and data; returns seconds until it is ready."""
    if postmaster_pid(info) is not None:
        return 0.0
    assert info.db is not None
    runas = info.extra.get("postgres_runas")
    datadir = Path(info.extra["postgres_datadir"])
    server = PostgresServer(
        PostgresBinaries(Path(info.extra["postgres_bindir"])),
        datadir=datadir,
        port=info.db.port,
        runas=RunAs(*runas) if runas else None,
        logfile=datadir / "postgres.log",
    )
    return server.start(timeout=timeout)

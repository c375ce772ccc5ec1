"""Stop and start the local sandbox's PostgreSQL (``kill_db``), from any process of the run.

:func:`stop_postgres` is a fast shutdown (SIGINT) of the postmaster named in ``postmaster.pid``;
:func:`start_postgres` starts it again with the same data folder, port and user::

    down_s = stop_postgres(info)
    ready_s = start_postgres(info)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ...errors import ChaosError
from ...info import SandboxInfo
from ...locations import cache_root
from ...postgres.embedded import PostgresBinaries, PostgresServer, RunAs, world_reachable
from ...processes import process_alive


def postmaster_pid(info: SandboxInfo) -> int | None:
    """The running postmaster's pid, from ``postmaster.pid`` (``None`` when it is down)."""
    datadir = info.extra.get("postgres_datadir")
    if not datadir:
        raise ChaosError("this sandbox does not say where its PostgreSQL data lives")
    try:
        pid = int((Path(datadir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process_alive(pid) else None


def stop_postgres(info: SandboxInfo, timeout: float = 10.0) -> float:
    """Fast shutdown of PostgreSQL; returns the seconds it took to be fully down."""
    began = time.monotonic()
    pid = postmaster_pid(info)
    if pid is None:
        return 0.0
    os.kill(pid, signal.SIGINT)
    pidfile = Path(info.extra["postgres_datadir"]) / "postmaster.pid"
    while process_alive(pid) or pidfile.exists():
        if time.monotonic() - began > timeout:
            os.kill(pid, signal.SIGQUIT)
        if time.monotonic() - began > timeout + 5:
            raise ChaosError(f"PostgreSQL (pid {pid}) did not stop within {timeout + 5:g}s")
        if not process_alive(pid):
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


def private_data_dir(workdir: Path, runas: RunAs | None) -> Path:
    """Where this sandbox's PostgreSQL data goes: inside ``workdir`` if the server can reach it.

    When the server runs as ``nobody`` and ``workdir`` sits under a private folder (pytest's
    ``tmp_path`` is one), the data goes to a reachable folder under the cache instead.
    """
    if runas is None or world_reachable(workdir):
        return workdir / "pgdata"
    holder = cache_root() / "data" / workdir.name
    holder.mkdir(mode=0o755, parents=True)
    return holder / "pgdata"


def postmaster_pid_of(datadir: str | None) -> int | None:
    """The postmaster running on ``datadir`` (from its ``postmaster.pid``), or ``None``."""
    if not datadir:
        return None
    try:
        pid = int((Path(datadir) / "postmaster.pid").read_text().split()[0])
        # A stale file after a crash may name a reused pid: only trust a postgres on our data.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if datadir.encode() in cmdline else None

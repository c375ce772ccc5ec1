"""The ``local`` backend: embedded PostgreSQL plus the app as a subprocess; no Docker, no cluster.

Layout of one sandbox (``livesandbox ls`` and ``gc`` read ``state.json``)::

    $TMP/livesandbox-<uid>/<id>/
        state.json      who made it, pids, ports (no passwords)
        pgdata/         the cluster copied from the cached template; postgres.log inside
        app.log         the app's stdout and stderr
        proxy.json      the fault proxy's control port (when livesandbox_fault_proxy is on)
        app.supervisor.json   the supervised app's current pid, restarts and exits

With the fault proxy on (the default) the app reaches PostgreSQL through the proxy's ``db`` route
and ``live_url`` reaches the app through its ``app`` route, so chaos markers can delay or break
either path; the proxy starts while PostgreSQL starts. The app runs under a small supervisor that
restarts it whenever it exits (eviction, OOM kill), like a Deployment would.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from psycopg import sql

from ...config import SandboxConfig
from ...errors import DatabaseStartError
from ...faultproxy.client import EXTRA_KEY as PROXY_KEY
from ...info import DatabaseInfo, SandboxInfo, default_owner
from ...locations import state_root
from ...postgres.embedded import (
    ADMIN_USER,
    APP_DB,
    APP_USER,
    PostgresBinaries,
    PostgresServer,
    copy_template,
    ensure_template,
    free_port,
    unprivileged_user,
)
from ...postgres.migrate import MIGRATE_LOG
from ...postgres.migrate import run_local as run_migrations
from ...processes import terminate
from ...protocol import ListScope, SandboxHealth, SandboxRecord, own_sandbox_refusals
from ...readiness import HttpReady, wait_until_ready
from ...redaction import redact_error
from .app import AppProcess
from .chaos import LocalChaos, local_fault_problems
from .clock import app_clock_env
from .health import local_health
from .launcher import ProxyProcess, start_proxy, supervised, watched_pid
from .limits import remove_sandbox_cgroups
from .pgctl import postmaster_pid_of, private_data_dir
from .records import LocalRecord, local_records, unowned_folder_hint, write_state
from .warm import claim, heal, lease_file, save_secrets, write_lease

if TYPE_CHECKING:
    from ...chaos.markers import ChaosPlan

APP_DB_NAME = "livesandbox-app"  # application_name of the app's sessions (chaos finds them)
# artifact file name -> SandboxInfo.extra key holding the log's path
LOGS = {"app.log": "app_log", "postgres.log": "postgres_log", "migrate.log": "migrate_log"}
ARTIFACT_MAX_BYTES = 1 << 20
_PORT_RETRIES = 3


class LocalBackend:
    """Provision and tear down local sandboxes (see the module docstring)."""

    name: ClassVar[str] = "local"
    supported_faults: ClassVar[frozenset[str]] = LocalChaos.kinds

    def __init__(self) -> None:
        self._servers: dict[str, PostgresServer] = {}
        self._apps: dict[str, AppProcess] = {}
        self._proxies: dict[str, ProxyProcess] = {}

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Start PostgreSQL and the app; on any failure (or Ctrl-C) remove what was made."""
        workdir = state_root() / sandbox_id
        workdir.mkdir(mode=0o755)
        info = SandboxInfo(
            id=sandbox_id,
            backend=self.name,
            run_id=run_id,
            owner=default_owner(),
            created_at=time.time(),
            workdir=str(workdir),
        )
        # Leased from the start, with room for the start-up: a run killed now still lapses.
        write_lease(info, info.created_at + config.startup_timeout + config.lease)
        try:
            self._provision(config, info, workdir)
        except BaseException as exc:
            self.teardown(info)
            # The app's output and the last probe body are in the message: no password leaves.
            redact_error(exc, info.secret_values())
            raise
        return info

    def _provision(self, config: SandboxConfig, info: SandboxInfo, workdir: Path) -> None:
        began = time.perf_counter()
        write_state(workdir, info, config)
        if config.fault_proxy:
            # Spawned now, waited for after PostgreSQL: the two start in parallel.
            proxy = start_proxy(workdir, parent_pid=watched_pid(config.keep or config.reuse))
            self._proxies[info.id] = proxy
            info.extra[PROXY_KEY] = {"pid": proxy.pid}
        runas = unprivileged_user()
        binaries = PostgresBinaries.locate(config.pg_bin).usable_by(runas)
        template = ensure_template(binaries, runas)
        datadir = private_data_dir(workdir, runas)
        info.extra["postgres_datadir"] = str(datadir)
        copy_template(template, datadir)
        info.timings["db_copy_s"] = round(time.perf_counter() - began, 4)

        server = self._start_postgres(binaries, datadir, runas, config.startup_timeout)
        self._servers[info.id] = server
        info.timings["db_ready_s"] = round(time.perf_counter() - began, 4)
        app_password, admin_password = secrets.token_hex(16), secrets.token_hex(16)
        with server.admin_connection() as conn:
            for role, password in ((APP_USER, app_password), (ADMIN_USER, admin_password)):
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
        info.db = DatabaseInfo(
            host="127.0.0.1",
            port=server.port,
            dbname=APP_DB,
            user=APP_USER,
            password=app_password,
            admin_user=ADMIN_USER,
            admin_password=admin_password,
        )
        if config.reuse:
            save_secrets(info)
        info.extra["postgres_pid"] = server.pid
        info.extra["postgres_log"] = str(server.logfile)
        # Enough to restart the server from any process (kill_db under xdist).
        info.extra["postgres_bindir"] = str(binaries.bindir)
        info.extra["postgres_runas"] = [runas.uid, runas.gid] if runas else None
        info.extra["health_path"] = config.health_path
        if info.id in self._proxies:
            client = self._proxies[info.id].wait(config.startup_timeout)
            info.extra[PROXY_KEY].update(
                control_port=client.port,
                db_port=client.set_route("db", f"127.0.0.1:{server.port}"),
            )
            info.timings["proxy_ready_s"] = round(time.perf_counter() - began, 4)
        write_state(workdir, info, config)

        if config.migrate_cmd:
            env = {**os.environ, **dict(config.app_env), "DATABASE_URL": info.db.dsn}
            log = workdir / MIGRATE_LOG
            info.extra["migrate_log"] = str(log)
            seconds = run_migrations(
                config.migrate_cmd, cwd=config.app_cwd, env=env, log=log,
                timeout=config.startup_timeout,
            )  # fmt: skip
            info.timings["migrate_s"] = round(seconds, 4)
        if config.app_cmd:
            self._start_app(config, info, workdir)
            info.timings["app_ready_s"] = round(time.perf_counter() - began, 4)
        write_state(workdir, info, config)

    def _start_postgres(
        self, binaries: PostgresBinaries, datadir: Path, runas: Any, timeout: float
    ) -> PostgresServer:
        last: DatabaseStartError | None = None
        for _ in range(_PORT_RETRIES):
            server = PostgresServer(
                binaries,
                datadir=datadir,
                port=free_port(),
                runas=runas,
                logfile=datadir / "postgres.log",
            )
            try:
                server.start(timeout=timeout)
                return server
            except DatabaseStartError as exc:
                # Another process may have taken the port between probe and bind: try another.
                if "could not bind" not in str(exc) and "in use" not in str(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    def _start_app(self, config: SandboxConfig, info: SandboxInfo, workdir: Path) -> None:
        assert config.app_cmd is not None and info.db is not None
        port = free_port()
        env = dict(os.environ)
        env.update(config.app_env)
        dsn = info.db.dsn
        proxy = info.extra.get(PROXY_KEY)
        if proxy:
            dsn = dsn.replace(f"@127.0.0.1:{info.db.port}/", f"@127.0.0.1:{proxy['db_port']}/")
        env.update(
            {
                "DATABASE_URL": f"{dsn}?application_name={APP_DB_NAME}",
                "PORT": str(port),
                "LIVESANDBOX_ID": info.id,
                "PYTHONUNBUFFERED": "1",
            }
        )
        # uvicorn and gunicorn take the port only as an argument: {port} in the command.
        user_cmd = tuple(part.replace("{port}", str(port)) for part in config.app_cmd)
        child_env = app_clock_env(config, info, workdir, env.get("LD_PRELOAD", ""))
        cmd = supervised(
            user_cmd,
            workdir,
            parent_pid=watched_pid(config.keep or config.reuse),
            child_env=child_env,
        )
        app = AppProcess(cmd, config.app_cwd, env, workdir / "app.log", user_cmd)
        app.probe_path = config.health_path
        self._apps[info.id] = app
        # The supervisor leads the app's process group: stopping the group stops both.
        info.extra["app_pid"] = app.start()
        info.extra["app_log"] = str(app.log)
        direct = f"http://127.0.0.1:{port}"
        info.extra["app_direct_endpoint"] = direct
        info.endpoint = direct
        if proxy:
            # While the app starts: the route only forwards once the app listens.
            client = self._proxies[info.id].wait(config.startup_timeout)
            proxy["app_port"] = client.set_route("app", f"127.0.0.1:{port}", protocol="http")
        wait_until_ready(
            HttpReady(
                direct + config.health_path,
                alive=app.ensure_alive,
                log_tail=app.last_output,
            ),
            timeout=config.startup_timeout,
        )
        if proxy:
            info.endpoint = f"http://127.0.0.1:{proxy['app_port']}"

    def log_offsets(self, info: SandboxInfo) -> dict[str, int]:
        """Size of ``app.log`` and ``postgres.log`` now (taken when a test starts and ends)."""
        offsets = {}
        for name, key in LOGS.items():
            if info.extra.get(key):
                try:
                    offsets[name] = os.stat(info.extra[key]).st_size
                except OSError:
                    continue
        return offsets

    def collect_between(
        self, info: SandboxInfo, start: dict[str, int], end: dict[str, int], dest: Path
    ) -> list[Path]:
        """Copy what each log got between two :meth:`log_offsets` (at most 1 MiB per log)."""
        written = []
        for name, key in LOGS.items():
            if not info.extra.get(key) or name not in end:
                continue
            begin, stop = start.get(name, 0), end[name]
            begin = max(begin, stop - ARTIFACT_MAX_BYTES)
            if stop <= begin:
                continue
            try:
                with open(info.extra[key], "rb") as log:
                    log.seek(begin)
                    chunk = log.read(stop - begin)
            except OSError:
                continue
            dest.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(chunk)
            written.append(dest / name)
        return written

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """The logs carry no timestamps: without offsets, the last 256 KiB of each log."""
        end = self.log_offsets(info)
        start = {name: max(0, size - (256 << 10)) for name, size in end.items()}
        return self.collect_between(info, start, end, dest)

    def teardown(self, info: SandboxInfo) -> None:
        """Stop the app, then PostgreSQL, then remove the sandbox folder."""
        app = self._apps.pop(info.id, None)
        if app is not None:
            app.stop()
        elif info.extra.get("app_pid"):
            terminate(int(info.extra["app_pid"]), 5.0, group=True)
        server = self._servers.pop(info.id, None)
        if server is not None:
            server.stop()
        elif info.extra.get("postgres_pid"):
            terminate(int(info.extra["postgres_pid"]), 10.0, group=True, first=signal.SIGINT)
        # A chaos kill_db may have restarted the server from another process: stop that one too.
        restarted = postmaster_pid_of(info.extra.get("postgres_datadir"))
        if restarted:
            terminate(restarted, 10.0, group=True, first=signal.SIGINT)
        # A run killed mid-test may leave a chaos cgroup (it lives outside the sandbox folder).
        remove_sandbox_cgroups(info.id)
        proxy = self._proxies.pop(info.id, None)
        if proxy is not None:
            terminate(proxy.pid, 2.0, group=True)
        elif (info.extra.get(PROXY_KEY) or {}).get("pid"):
            terminate(int(info.extra[PROXY_KEY]["pid"]), 2.0, group=True)
        if info.extra.get("postgres_datadir"):
            shutil.rmtree(Path(info.extra["postgres_datadir"]).parent, ignore_errors=True)
        if info.workdir:
            shutil.rmtree(info.workdir, ignore_errors=True)
        lease_file(info.id).remove()

    # ----------------------------------------------------------------- protocol: config, chaos, CLI

    def check_config(self, config: SandboxConfig) -> list[str]:
        """Settings the local backend cannot honour."""
        problems = own_sandbox_refusals(config, self.name, "embedded PostgreSQL")
        if config.build:
            problems.append(
                "--sandbox-build: the local backend runs the app as a process "
                "(--sandbox-app-cmd), not an image; use --sandbox=docker or --sandbox=kube"
            )
        return problems

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """PostgreSQL, the fault proxy and the app's supervisor still run (a few ``kill 0``)."""
        server = self._servers.get(info.id)
        code = server.process.poll() if server is not None and server.process else None
        return local_health(info, postmaster_pid_of(info.extra.get("postgres_datadir")), code)

    def chaos(self, info: SandboxInfo, owner: str) -> LocalChaos:
        """The local chaos driver (fault proxy, supervisor, cgroups, pg_ctl)."""
        return LocalChaos(info, owner=owner)

    def fault_problems(self, plan: ChaosPlan, config: SandboxConfig) -> list[str]:
        """What this machine or configuration cannot do (proxy off, no cgroup cpu controller)."""
        return local_fault_problems(plan, config)

    def list_sandboxes(self, scope: ListScope) -> list[SandboxRecord]:
        """Local sandbox folders (under the state folder) with our ownership mark."""
        return [rec.record() for rec in local_records()]

    def reap(self, record: SandboxRecord) -> None:
        """Tear the listed sandbox down from its state file (unless a run claimed it meanwhile)."""
        rec: LocalRecord = record.handle
        listed = rec.lease
        with rec.lease_file.locked():
            if rec.lease_file.read() != listed:
                return
            self.teardown(rec.info())

    # ----------------------------------------------------------------- protocol: leases, reuse

    def renew_lease(self, info: SandboxInfo, until: float) -> None:
        """Extend this run's lease file (a claim by another run is never overwritten)."""
        lease_file(info.id).renew(info.run_id, until)

    def reuse_parts(self, config: SandboxConfig) -> dict[str, str]:
        """The PostgreSQL server's version and folder."""
        binaries = PostgresBinaries.locate(config.pg_bin)
        return {"postgres": binaries.version, "bindir": str(binaries.bindir)}

    def rolls_builds(self, config: SandboxConfig) -> bool:
        """Never: a changed build is another sandbox."""
        return False

    def claim_warm(
        self, config: SandboxConfig, key: str, run_id: str, until: float
    ) -> SandboxInfo | None:
        """Claim a warm (or abandoned) local sandbox of ``key`` (compare-and-set on its lease)."""
        return claim(config, key, run_id, until)

    def keep_warm(self, info: SandboxInfo, until: float) -> None:
        """Mark the sandbox warm (claimable by its key) or kept until ``until``."""
        write_lease(info, until, state="warm" if info.extra.get("reuse_key") else "kept")

    def heal(self, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
        """PostgreSQL and proxy must run; the app is restarted only when its health check fails."""
        return heal(info, config)

    @staticmethod
    def unowned_hint(sandbox_id: str) -> str | None:
        """Why ``down`` refused a folder that is not ours (None when there is none)."""
        return unowned_folder_hint(sandbox_id)

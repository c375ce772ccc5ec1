"""Leases and warm sandboxes of the local backend (``--sandbox-reuse``).

The lease is ``<state>/<id>.lease.json``; a claim is a compare-and-set on it under ``flock``, so
of two runs starting at once exactly one gets a given warm sandbox. The passwords a reusing run
needs are in ``<id>/secrets.json`` (mode 0600, never printed)::

    write_lease(info, until, state="held")
    info = claim(config, key, run_id, until)        # None: no warm sandbox of this key
    heal(info, config)                              # restart the app only if unhealthy
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...config import SandboxConfig
from ...errors import SandboxError
from ...info import SandboxInfo
from ...lease import Lease, LeaseFile, lease_path
from ...locations import state_root
from ...processes import process_alive, start_time
from ...readiness import HttpReady, answers, wait_until_ready
from .launcher import supervisor_state
from .records import LocalRecord, local_records

SECRETS_FILE = "secrets.json"
PROBE_TIMEOUT = 1.0


def lease_file(sandbox_id: str) -> LeaseFile:
    """The lease of local sandbox ``sandbox_id``."""
    return LeaseFile(lease_path(state_root(), sandbox_id))


def write_lease(info: SandboxInfo, until: float, *, state: str = "held") -> None:
    """Set the lease of ``info`` (held by its run, or warm for its reuse key)."""
    lease = Lease(
        "warm" if state == "warm" else "kept" if state == "kept" else "held",
        info.run_id,
        round(until, 3),
        key=str(info.extra.get("reuse_key") or ""),
        pid=os.getpid() if state == "held" else 0,
    )
    lease_file(info.id).write(lease)


def save_secrets(info: SandboxInfo) -> None:
    """Keep the database passwords for a reusing run (mode 0600 in the sandbox folder)."""
    if info.workdir is None or info.db is None:
        return
    path = Path(info.workdir) / SECRETS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"password": info.db.password, "admin_password": info.db.admin_password}, handle)


def _claimable(rec: LocalRecord, key: str) -> bool:
    lease = rec.lease
    if lease is None or lease.key != key or (rec.expires_in or 0) < 0:
        return False  # another key's, or past its TTL (gc reaps it)
    if lease.state == "warm":
        return not lease.lapsed
    # Held by a run that is gone (kill -9): the next run takes it over and repairs it.
    return rec.orphaned


def claim(config: SandboxConfig, key: str, run_id: str, until: float) -> SandboxInfo | None:
    """The first warm (or abandoned) sandbox of ``key`` this process wins, re-leased to it."""
    mine = Lease("held", run_id, round(until, 3), key=key, pid=os.getpid())
    for rec in local_records():
        if not _claimable(rec, key):
            continue
        seen = rec.lease

        def unchanged(now: Lease | None, seen: Lease | None = seen) -> bool:
            return now == seen

        # Compare-and-set: only if nobody changed the lease since we looked.
        if not rec.lease_file.compare_and_set(unchanged, mine):
            continue
        info = _attached_info(rec, run_id)
        if info is not None:
            return info
        rec.lease_file.write(replace(mine, expires_at=0.0))  # unusable: lapse it for gc
    return None


def _attached_info(rec: LocalRecord, run_id: str) -> SandboxInfo | None:
    try:
        secret = json.loads((rec.path / SECRETS_FILE).read_text())
    except (OSError, ValueError):
        return None
    rec.update(pytest_pid=os.getpid(), pytest_started=start_time(os.getpid()), run_id=run_id)
    info = rec.info()
    if info.db is None:
        return None
    info.db = replace(info.db, password=secret["password"], admin_password=secret["admin_password"])
    info.run_id = run_id
    return info


def heal(info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
    """PostgreSQL and the proxy must run; the app is restarted only when its health check fails."""
    pid = int(info.extra.get("postgres_pid") or 0)
    if info.db is not None and not _postgres_alive(info, pid):
        raise SandboxError(f"the warm sandbox {info.id}'s PostgreSQL is gone")
    proxy = info.extra.get("proxy") or {}
    if proxy.get("pid") and not process_alive(int(proxy["pid"])):
        raise SandboxError(f"the warm sandbox {info.id}'s fault proxy is gone")
    direct = info.extra.get("app_direct_endpoint")
    if not direct:
        return {"app_restarted": False}
    url = str(direct) + config.health_path
    if answers(url, PROBE_TIMEOUT):
        return {"app_restarted": False}
    probe = HttpReady(url, what="the reused app")
    workdir = Path(str(info.workdir))
    app = supervisor_state(workdir).get("pid")
    if not process_alive(int(info.extra.get("app_pid") or 0)):
        raise SandboxError(f"the warm sandbox {info.id}'s app supervisor is gone")
    if app and process_alive(int(app)):
        os.kill(int(app), signal.SIGKILL)  # the supervisor starts a fresh one
    began = time.monotonic()
    wait_until_ready(probe, timeout=config.startup_timeout)
    return {"app_restarted": True, "app_restart_s": round(time.monotonic() - began, 4)}


def _postgres_alive(info: SandboxInfo, pid: int) -> bool:
    if pid and process_alive(pid):
        return True
    # kill_db may have restarted it from another process: trust the data folder's pid file.
    datadir = info.extra.get("postgres_datadir")
    try:
        found = int((Path(str(datadir)) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if process_alive(found):
        info.extra["postgres_pid"] = found
        return True
    return False

"""Leases and warm sandboxes of the docker backend (``--sandbox-reuse``).

Container labels cannot change, so the reuse key is stamped on every container, network and
volume when the sandbox is made (``livesandbox/reuse-key``), and the lease lives in the state
folder (``<state>/<id>.lease.json``, as on the local backend). A claim is a compare-and-set on
that lease under ``flock``: of two runs starting at once exactly one gets a given warm
sandbox. What a reusing run needs to reconnect is in ``<state>/<id>/warm.json`` (no passwords)
and ``<state>/<id>/secrets.json`` (mode 0600, never printed: the passwords and the fault proxy's
control token, :attr:`SandboxInfo.tokens`)::

    labels |= reuse_labels(key)                      # at creation, when --sandbox-reuse
    save_warm(info)                                  # the sandbox is up / handed back
    info = claim(client, key, run_id, until)         # None: no warm sandbox of this key
    heal(client, info, config)                       # restart the app only if unhealthy

Only resources carrying our ``managed-by`` label are ever looked at.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ...config import SandboxConfig
from ...errors import SandboxError
from ...info import MANAGED_BY, SandboxInfo
from ...lease import Lease
from ...locations import state_root
from ...processes import process_alive
from ...protocol import SandboxRecord
from ...readiness import HttpReady, answers, wait_until_ready
from .host import ensure_image
from .resources import (
    COMPONENT,
    MANAGED_BY_LABEL,
    SANDBOX_ID,
    DockerRecord,
    docker_sandbox_record,
    lease_file,
)

REUSE_KEY = "livesandbox/reuse-key"
WARM_FILE = "warm.json"
SECRETS_FILE = "secrets.json"
PROBE_TIMEOUT = 1.0


def reuse_labels(key: str) -> dict[str, str]:
    """The label that makes a sandbox's resources findable by its reuse key."""
    return {REUSE_KEY: key}


def image_parts(client: docker.DockerClient, images: tuple[str | None, str]) -> dict[str, str]:
    """The reuse key's part of the docker backend: the app's and PostgreSQL's image ids.

    An image not on the daemon yet is pulled first (provisioning would), so the key a run
    computes before provisioning is the one stamped on the containers it makes.
    """
    parts = {}
    for component, image in zip(("app", "postgres"), images, strict=True):
        if image is not None:
            ensure_image(client, image, role=component)
            parts[component] = str(client.images.get(image).id)
    return parts


def save_warm(info: SandboxInfo) -> None:
    """Write what a reusing run needs: the public info and, mode 0600, passwords and tokens."""
    if info.workdir is None or info.db is None:
        return
    folder = Path(info.workdir)
    tmp = folder / (WARM_FILE + ".tmp")
    tmp.write_text(json.dumps(info.public()))
    tmp.replace(folder / WARM_FILE)
    fd = os.open(folder / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        secret = {"password": info.db.password, "admin_password": info.db.admin_password}
        json.dump({**secret, "tokens": info.tokens}, handle)


def write_lease(info: SandboxInfo, until: float) -> None:
    """Hand the sandbox back: warm for its reuse key, or kept (``--sandbox-keep``)."""
    key = str(info.extra.get("reuse_key") or "")
    lease_file(info.id).write(Lease("warm" if key else "kept", info.run_id, round(until, 3), key))


def _holder_gone(lease: Lease) -> bool:
    return lease.state == "held" and not process_alive(lease.pid)


def _claimable(lease: Lease | None, key: str, expired: bool) -> bool:
    if lease is None or lease.key != key or expired:
        return False  # another key's, or past its TTL (gc reaps it)
    if lease.state == "warm":
        return not lease.lapsed
    return _holder_gone(lease)  # held by a run that is gone (kill -9): taken over and repaired


def claim(client: docker.DockerClient, key: str, run_id: str, until: float) -> SandboxInfo | None:
    """The first warm (or abandoned) sandbox of ``key`` this process wins, re-leased to it.

    One ``containers.list`` call finds the candidates; a sandbox with a container that is not
    running any more, or without its saved info, is left with a lapsed lease for gc.
    """
    filters: dict[str, str | list[str] | bool] = {
        "label": [f"{MANAGED_BY_LABEL}={MANAGED_BY}", f"{REUSE_KEY}={key}"]
    }
    found: dict[str, list[Any]] = {}
    for container in client.containers.list(all=True, sparse=True, filters=filters):
        labels = container.attrs.get("Labels") or {}
        found.setdefault(str(labels.get(SANDBOX_ID)), []).append(container)
    mine = Lease("held", run_id, round(until, 3), key=key, pid=os.getpid())
    for sandbox_id, containers in found.items():
        labels = containers[0].attrs.get("Labels") or {}
        lease = lease_file(sandbox_id).read()
        if not _claimable(lease, key, DockerRecord(sandbox_id, labels).expired):
            continue

        def unchanged(now: Lease | None, seen: Lease | None = lease) -> bool:
            return now == seen

        if not lease_file(sandbox_id).compare_and_set(unchanged, mine):
            continue  # another run was quicker
        info = _attached_info(sandbox_id, run_id, containers)
        if info is not None:
            return info
        lease_file(sandbox_id).write(replace(mine, expires_at=0.0))  # unusable: lapse it for gc
    return None


def _attached_info(sandbox_id: str, run_id: str, containers: list[Any]) -> SandboxInfo | None:
    folder = state_root() / sandbox_id
    try:
        info = SandboxInfo.from_json(json.loads((folder / WARM_FILE).read_text()))
        secret = json.loads((folder / SECRETS_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return None
    if info.db is None:
        return None
    db_running = any(
        (c.attrs.get("Labels") or {}).get(COMPONENT) == "db" and c.attrs.get("State") == "running"
        for c in containers
    )
    if not db_running:
        return None
    info.db = replace(info.db, password=secret["password"], admin_password=secret["admin_password"])
    info.tokens = {str(k): str(v) for k, v in (secret.get("tokens") or {}).items()}
    info.run_id = run_id
    return info


def heal(client: docker.DockerClient, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
    """The app must answer its health check; restarted (container restart) only when it does not."""
    if not info.endpoint:
        return {"app_restarted": False}
    url = info.endpoint + config.health_path
    if answers(url, PROBE_TIMEOUT):
        return {"app_restarted": False}
    name = str((info.extra.get("containers") or {}).get("app") or "")
    began = time.monotonic()
    try:
        client.containers.get(name).restart(timeout=5)
    except docker.errors.DockerException as exc:
        raise SandboxError(f"the warm sandbox {info.id}'s app container is gone: {exc}") from None
    wait_until_ready(HttpReady(url, what="the reused app"), timeout=config.startup_timeout)
    return {"app_restarted": True, "app_restart_s": round(time.monotonic() - began, 4)}


def warm_status(rec: DockerRecord, lease: Lease | None) -> str:
    """The sandbox's status for ``livesandbox ls``, its lease taken into account.

    ``warm``/``lapsed`` for one handed back warm; else as its labels say, except that a
    reused sandbox's holder is the lease's pid, not the pid that created it.

    >>> warm_status(DockerRecord("a", {}), Lease("warm", "run-1", time.time() - 1, "k"))
    'lapsed'
    """
    if lease is not None and lease.state == "warm":
        if lease.lapsed:
            return "lapsed"
        return "expired" if rec.expired else "warm"
    if lease is not None and lease.state == "held" and lease.pid and lease.key:
        if process_alive(lease.pid):
            return "running"
        return "expired" if rec.expired else "orphaned"
    return rec.status


def warm_record(rec: DockerRecord) -> SandboxRecord:
    """The CLI's view of a docker sandbox, warm ones included (their key, their lease)."""
    record = docker_sandbox_record(rec)
    lease = lease_file(rec.id).read()
    status = warm_status(rec, lease)
    return replace(
        record,
        status=status,
        reapable=status in ("orphaned", "expired", "lapsed"),
        protected=status == "running" or (status == record.status and record.protected),
        lease_expires_in=None if lease is None else lease.expires_in,
        reuse_key=rec.labels.get(REUSE_KEY, ""),
        handle=(rec, lease),
    )

"""Ownership labels of docker sandboxes, and finding and removing what carries them.

Every container, network and volume the docker backend makes is labelled; teardown and
``livesandbox ls/gc/down`` (our reaper) find resources by these labels and never touch anything
without the ``managed-by`` label::

    app.kubernetes.io/managed-by=pytest-livesandbox
    livesandbox/sandbox-id=3f9c2a1b        livesandbox/run-id=...   livesandbox/owner=me@host
    livesandbox/expires-at=2026-11-26T09:00:00Z (now + --sandbox-ttl)
    livesandbox/created-at, livesandbox/host, livesandbox/pytest-pid, livesandbox/pytest-started,
    livesandbox/keep, livesandbox/component (db | app), livesandbox/endpoint (app only)

    for record in docker_records(client):
        if record.reapable(older_than=None):
            remove_sandbox(client, record.id)
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from ...info import MANAGED_BY
from ...lease import LeaseFile, lease_path
from ...locations import state_root
from ...processes import process_alive, start_time
from ...protocol import SandboxRecord

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SANDBOX_ID = "livesandbox/sandbox-id"
RUN_ID = "livesandbox/run-id"
OWNER = "livesandbox/owner"
EXPIRES_AT = "livesandbox/expires-at"
CREATED_AT = "livesandbox/created-at"
HOST = "livesandbox/host"
PYTEST_PID = "livesandbox/pytest-pid"
PYTEST_STARTED = "livesandbox/pytest-started"
KEEP = "livesandbox/keep"
COMPONENT = "livesandbox/component"
ENDPOINT = "livesandbox/endpoint"


def sandbox_labels(
    *, sandbox_id: str, run_id: str, owner: str, created_at: float, ttl: float, keep: bool
) -> dict[str, str]:
    """The labels shared by every resource of one sandbox."""
    expires = datetime.fromtimestamp(created_at + ttl, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pid = os.getpid()
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        SANDBOX_ID: sandbox_id,
        RUN_ID: run_id,
        OWNER: owner,
        EXPIRES_AT: expires,
        CREATED_AT: f"{created_at:.3f}",
        HOST: socket.gethostname(),
        PYTEST_PID: str(pid),
        PYTEST_STARTED: start_time(pid) or "",
        KEEP: "true" if keep else "false",
    }


def _ours(sandbox_id: str | None = None) -> dict[str, Any]:
    wanted = [f"{MANAGED_BY_LABEL}={MANAGED_BY}"]
    if sandbox_id is not None:
        wanted.append(f"{SANDBOX_ID}={sandbox_id}")
    return {"label": wanted}


@dataclass
class DockerRecord:
    """One docker sandbox as its labelled resources describe it."""

    id: str
    labels: dict[str, str]
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    endpoint: str | None = None

    backend = "docker"

    @property
    def owner(self) -> str:
        """Who made it."""
        return self.labels.get(OWNER, "?")

    @property
    def age(self) -> float:
        """Seconds since creation."""
        return time.time() - float(self.labels.get(CREATED_AT) or 0)

    @property
    def expires_in(self) -> float | None:
        """Seconds until its ``expires-at`` label (negative once past); ``None`` without one."""
        text = self.labels.get(EXPIRES_AT)
        try:
            return datetime.fromisoformat(text).timestamp() - time.time() if text else None
        except ValueError:
            return None

    @property
    def expired(self) -> bool:
        """True once its ``expires-at`` has passed."""
        return self.expires_in is not None and self.expires_in < 0

    @property
    def owner_alive(self) -> bool | None:
        """Is the pytest process that made it alive? ``None`` when it ran on another host."""
        if self.labels.get(HOST) != socket.gethostname():
            return None
        pid = int(self.labels.get(PYTEST_PID) or 0)
        return process_alive(pid, self.labels.get(PYTEST_STARTED) or None)

    @property
    def status(self) -> str:
        """``running``, ``kept``, ``orphaned`` or ``expired`` (``running`` if unknown)."""
        alive = self.owner_alive
        if alive is True:
            return "running"
        if self.expired:
            return "expired"
        if alive is None:
            return "running"
        return "kept" if self.labels.get(KEEP) == "true" else "orphaned"


def docker_records(client: docker.DockerClient) -> list[DockerRecord]:
    """Every docker sandbox on the daemon, from its labelled containers, networks and volumes."""
    records: dict[str, DockerRecord] = {}

    def record(labels: dict[str, str]) -> DockerRecord | None:
        sandbox_id = labels.get(SANDBOX_ID)
        if not sandbox_id or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return None
        if sandbox_id not in records:
            records[sandbox_id] = DockerRecord(sandbox_id, dict(labels))
        return records[sandbox_id]

    for container in _containers(client, _ours()):
        labels = container.attrs.get("Labels") or {}
        rec = record(labels)
        if rec is not None:
            rec.containers.append(container_name(container))
            rec.endpoint = rec.endpoint or labels.get(ENDPOINT)
    for network in client.networks.list(filters=_ours()):
        rec = record(network.attrs.get("Labels") or {})
        if rec is not None:
            rec.networks.append(str(network.name))
    for volume in client.volumes.list(filters=_ours()):
        rec = record(volume.attrs.get("Labels") or {})
        if rec is not None:
            rec.volumes.append(str(volume.name))
    return sorted(records.values(), key=lambda r: float(r.labels.get(CREATED_AT) or 0))


def remove_sandbox(client: docker.DockerClient, sandbox_id: str) -> list[str]:
    """Remove every resource labelled as ours and as sandbox ``sandbox_id``; return their names.

    Containers go first, side by side (the daemon may take seconds to clean up one that had a
    chaos restart), with their anonymous volumes; then networks, then our named volumes.
    """
    containers = _containers(client, _ours(sandbox_id))
    with ThreadPoolExecutor(max_workers=4) as pool:
        removed = [name for name in pool.map(_remove_container, containers) if name]
    for network in client.networks.list(filters=_ours(sandbox_id)):
        try:
            network.remove()
            removed.append(str(network.name))
        except docker.errors.NotFound:
            pass
    for volume in client.volumes.list(filters=_ours(sandbox_id)):
        try:
            volume.remove(force=True)
            removed.append(str(volume.name))
        except docker.errors.NotFound:
            pass
    return removed


def _remove_container(container: Container) -> str | None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
    return container_name(container)


def _containers(client: docker.DockerClient, filters: dict[str, Any]) -> list[Container]:
    # sparse: the list call alone, no inspect per container, which would race with removals
    # (a parallel teardown or gc) and fail with NotFound.
    return client.containers.list(all=True, filters=filters, sparse=True)


def container_name(container: Container) -> str:
    """The name of a container from a sparse list."""
    names = container.attrs.get("Names") or [container.id or "?"]
    return str(names[0]).lstrip("/")


def lease_file(sandbox_id: str) -> LeaseFile:
    """The lease of docker sandbox ``sandbox_id`` (a file: container labels cannot change)."""
    return LeaseFile(lease_path(state_root(), sandbox_id))


def docker_sandbox_record(rec: DockerRecord) -> SandboxRecord:
    """The CLI's view of a docker sandbox."""
    lease = lease_file(rec.id).read()
    return SandboxRecord(
        id=rec.id,
        backend="docker",
        status=rec.status,
        age=rec.age,
        owner=rec.owner,
        where=rec.endpoint or "-",
        expires_in=rec.expires_in,
        reapable=rec.status in ("orphaned", "expired"),
        protected=rec.owner_alive is True,
        lease_expires_in=None if lease is None else lease.expires_in,
        handle=rec,
    )

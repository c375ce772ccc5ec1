"""Chaos on the docker backend: real effects on the sandbox's containers, from any process.

Each function works from :class:`~pytest_livesandbox.sandbox.SandboxInfo` alone (xdist workers
have nothing else) and returns JSON-able records named like the local driver's
(``terminated_s``, ``recovery_s``, ``oom_kills``, ``stop_s``, ``start_s``, ``down_s``):

========================  ==========================================================
fault (marker)            effect
========================  ==========================================================
evict (evict_pod)         ``docker stop`` of the app container (SIGTERM, SIGKILL after the
                          grace period), started again at once; recovery is measured until
                          the app answers its health path
resource_limits           ``container.update(mem_limit=..., cpu_quota=...)``: a real cgroup
                          limit; going over it gets the app OOM-killed (``State.OOMKilled``,
                          daemon ``oom`` events) and restarted by its restart policy
kill_db                   ``docker kill`` of the PostgreSQL container, ``docker start`` after;
                          the data volume survives, the server recovers from its WAL
========================  ==========================================================

::

    with memory_limit(info, 96 * MiB) as limit:
        live_http.get("/alloc?mb=200")           # connection dropped: the app was OOM-killed
    assert limit.effect["oom_kills"] == 1        # and it is back, without the limit

    record = evict(info)                          # {"terminated_s": ..., "recovery_s": ...}
    with db_down(info):                           # PostgreSQL killed; restarted on exit
        assert live_http.get("/items").status_code == 503
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from ...errors import ChaosError, StartupTimeout
from ...info import SandboxInfo
from ...readiness import HttpReady, wait_until_ready
from .host import connect
from .postgres import PostgresReady

RECOVERY_TIMEOUT_S = 30.0
EVICT_GRACE_S = 10
CPU_PERIOD_US = 100_000
MiB = 1024 * 1024
_COMPONENTS = {
    "backend": "app",
    "app": "app",
    "db": "db",
    "postgres": "db",
    "proxy": "proxy",
    "fault-proxy": "proxy",
}


def container(info: SandboxInfo, component: str, client: docker.DockerClient | None = None) -> Any:
    """The sandbox's container for ``component`` (``backend``/``app`` or ``db``/``postgres``)."""
    key = _COMPONENTS.get(component)
    names = info.extra.get("containers") or {}
    if info.backend != "docker" or key not in names:
        raise ChaosError(
            f"component {component!r}: this {info.backend} sandbox has no such container "
            f"(it has: {', '.join(names) or 'none'})"
        )
    try:
        return (client or connect()).containers.get(names[key])
    except docker.errors.NotFound:
        raise ChaosError(f"the {key} container {names[key]} is gone") from None


def wait_app_ready(info: SandboxInfo, timeout: float = RECOVERY_TIMEOUT_S) -> float:
    """Seconds until the app answers its health path (0 when the sandbox runs no app)."""
    if not info.endpoint:
        return 0.0
    path = info.extra.get("health_path", "/healthz")
    return wait_until_ready(HttpReady(info.endpoint + path, what="the app"), timeout=timeout)


# ----------------------------------------------------------------------------- evict


def evict(
    info: SandboxInfo,
    component: str = "backend",
    *,
    grace: int = EVICT_GRACE_S,
    wait: bool = True,
    timeout: float = RECOVERY_TIMEOUT_S,
) -> dict[str, Any]:
    """Stop the app container like an eviction (SIGTERM, SIGKILL after ``grace`` s), start it again.

    With ``wait`` (the default) also waits until the app answers its health path and reports
    ``recovery_s``, measured from the stop request (``ready_wait_s``: from the new start).
    """
    app = container(info, component)
    began = time.monotonic()
    app.stop(timeout=grace)
    app.reload()
    record: dict[str, Any] = {
        "container": app.name,
        "terminated_s": round(time.monotonic() - began, 4),
        "exit_code": app.attrs["State"].get("ExitCode"),
    }
    app.start()
    if wait:
        record["ready_wait_s"] = round(wait_app_ready(info, timeout), 4)
        record["recovery_s"] = round(time.monotonic() - began, 4)
    record["evicted_at"] = round(time.time() - (time.monotonic() - began), 4)
    return record


# ----------------------------------------------------------------------------- resource limits


def limit_resources(
    info: SandboxInfo,
    *,
    memory: int | None = None,
    cpu: float | None = None,
    component: str = "backend",
) -> dict[str, Any]:
    """Put a real memory (bytes) and/or CPU (cores) limit on the app container.

    Returns the undo record for :func:`restore_resources` (JSON-able, so a ledger can hold it).
    Swap is limited to the same amount, so going over the limit means an OOM kill.
    """
    if memory is None and cpu is None:
        raise ChaosError("limit_resources: give memory= and/or cpu=")
    client = connect()
    app = container(info, component, client)
    host = app.attrs["HostConfig"]
    undo: dict[str, Any] = {
        "container": app.name,
        "component": component,
        "since_ns": time.time_ns(),
        "restarts_before": int(app.attrs.get("RestartCount", 0)),
        "memory": host.get("Memory") or 0,
        "memory_swap": host.get("MemorySwap") or 0,
        "cpu_quota": host.get("CpuQuota") or 0,
        "cpu_period": host.get("CpuPeriod") or 0,
    }
    limits: dict[str, Any] = {}
    if memory is not None:
        limits.update(mem_limit=memory, memswap_limit=memory)
        undo["limit_memory"] = memory
    if cpu is not None:
        limits.update(cpu_period=CPU_PERIOD_US, cpu_quota=int(cpu * CPU_PERIOD_US))
        undo["limit_cpu"] = cpu
    try:
        app.update(**limits)
    except docker.errors.APIError as exc:
        raise ChaosError(f"could not limit {app.name}: {exc.explanation or exc}") from None
    return undo


def restore_resources(
    info: SandboxInfo, undo: dict[str, Any], *, timeout: float = RECOVERY_TIMEOUT_S
) -> dict[str, Any]:
    """Lift the limits of :func:`limit_resources`; report what they did to the app.

    The effect holds ``oom_kills`` (the daemon's ``oom`` events since the limit was set),
    ``oom_killed`` (``State.OOMKilled``), ``app_restarts``, an ``outcome`` sentence and, when the
    app had to come back, ``recovery_s`` until it answers its health path again.
    """
    client = connect()
    app = container(info, undo["component"], client)
    limits: dict[str, Any] = {}
    if "limit_memory" in undo:
        # The API cannot unset a memory limit (0 means "unchanged"); the machine's memory is the
        # same thing in practice. Swap first is not needed: runc raises both in the right order.
        memory = int(undo["memory"]) or int(client.info()["MemTotal"])
        swap = int(undo["memory_swap"])
        limits.update(mem_limit=memory, memswap_limit=swap if swap > memory else memory)
    if "limit_cpu" in undo:
        limits.update(
            cpu_period=int(undo["cpu_period"]) or CPU_PERIOD_US,
            cpu_quota=int(undo["cpu_quota"]) or -1,
        )
    app.update(**limits)
    now_ns = time.time_ns()
    events = client.events(
        since=int(undo["since_ns"] // 1_000_000_000),
        until=now_ns // 1_000_000_000 + 1,
        filters={"container": app.id, "event": "oom"},
        decode=True,
    )
    ooms = [e for e in events if int(e.get("timeNano", 0)) >= int(undo["since_ns"])]
    app.reload()
    state = app.attrs["State"]
    restarts = int(app.attrs.get("RestartCount", 0)) - int(undo["restarts_before"])
    effect: dict[str, Any] = {
        "oom_kills": len(ooms),
        "oom_killed": bool(ooms) and bool(state.get("OOMKilled")),
        "app_restarts": restarts,
    }
    if ooms:
        effect["outcome"] = "killed (OOM)"
    elif restarts:
        effect["outcome"] = "restarted"
    else:
        effect["outcome"] = "not exceeded"
    if ooms or restarts or app.status != "running":
        if app.status in ("exited", "dead", "created"):
            app.start()
        effect["recovery_s"] = round(wait_app_ready(info, timeout), 4)
    return effect


@dataclass
class LimitHandle:
    """What :func:`memory_limit` yields: the undo record, and the effect once the block ends."""

    undo: dict[str, Any]
    effect: dict[str, Any] = field(default_factory=dict)


@contextmanager
def memory_limit(
    info: SandboxInfo, memory: int, *, cpu: float | None = None, component: str = "backend"
) -> Iterator[LimitHandle]:
    """Run the block with the app under a memory limit in bytes (and CPU, cores); always lifted.

    Marker sizes such as ``"96Mi"`` are parsed by ``chaos.markers.parse_memory``.
    """
    handle = LimitHandle(limit_resources(info, memory=memory, cpu=cpu, component=component))
    try:
        yield handle
    finally:
        handle.effect = restore_resources(info, handle.undo)


# ----------------------------------------------------------------------------- kill_db


def kill_db(info: SandboxInfo) -> dict[str, Any]:
    """Kill the PostgreSQL container (SIGKILL: no shutdown checkpoint); it stays down."""
    db = container(info, "db")
    began = time.monotonic()
    try:
        db.kill()
    except docker.errors.APIError as exc:
        if "is not running" not in str(exc):
            raise ChaosError(f"could not kill {db.name}: {exc.explanation or exc}") from None
    db.wait(timeout=30)
    return {"container": db.name, "stop_s": round(time.monotonic() - began, 4)}


def start_db(info: SandboxInfo, *, timeout: float = RECOVERY_TIMEOUT_S) -> dict[str, Any]:
    """Start the PostgreSQL container again and wait until it accepts a real connection."""
    if info.db is None:
        raise ChaosError("this sandbox has no database")
    db = container(info, "db")
    began = time.monotonic()
    db.reload()
    if db.status != "running":
        db.start()
    try:
        wait_until_ready(PostgresReady(info.db.url(admin=True), db), timeout=timeout)
    except StartupTimeout as exc:
        raise ChaosError(f"PostgreSQL did not come back: {exc}") from None
    return {"start_s": round(time.monotonic() - began, 4)}


@contextmanager
def db_down(info: SandboxInfo, *, wait_app: bool = True) -> Iterator[dict[str, Any]]:
    """Run the block with PostgreSQL killed; restart it (and wait for the app) afterwards."""
    began = time.monotonic()
    record = kill_db(info)
    try:
        yield record
    finally:
        record["down_s"] = round(time.monotonic() - began, 4)
        record.update(start_db(info))
        if wait_app:
            up = time.monotonic()
            wait_app_ready(info)
            record["recovery_s"] = round(time.monotonic() - up, 4)


# ----------------------------------------------------------------------------- baseline


def baseline_problems(info: SandboxInfo, timeout: float = RECOVERY_TIMEOUT_S) -> list[str]:
    """Why the sandbox is not back to normal (empty when it is), waiting up to ``timeout``."""
    problems = []
    client = connect()
    total = int(client.info()["MemTotal"])
    for component in info.extra.get("containers") or {}:
        try:
            item: Container = container(info, component, client)
        except ChaosError as exc:
            problems.append(str(exc))
            continue
        if item.status != "running":
            problems.append(f"the {component} container is {item.status}")
        host = item.attrs["HostConfig"]
        if 0 < int(host.get("Memory") or 0) < total:
            problems.append(f"the {component} container still has a memory limit")
        if int(host.get("CpuQuota") or 0) > 0:
            problems.append(f"the {component} container still has a CPU limit")
    if info.db is not None and not problems:
        probe = PostgresReady(info.db.url(admin=True), container(info, "db", client))
        try:
            wait_until_ready(probe, timeout=timeout)
        except StartupTimeout as exc:
            problems.append(f"PostgreSQL does not accept connections: {str(exc).splitlines()[0]}")
    try:
        wait_app_ready(info, timeout)
    except StartupTimeout as exc:
        problems.append(f"the app is not ready again: {str(exc).splitlines()[0]}")
    return problems

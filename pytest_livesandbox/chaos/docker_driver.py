"""The docker backend's :class:`~.driver.ChaosDriver`: the effects of :mod:`.docker` as markers.

========================  ==========================================================
fault (marker)            effect
========================  ==========================================================
evict (evict_pod)         app container stopped (SIGTERM, SIGKILL after 10 s) and started
                          again; removal waits until it answers its health path
                          (``recovery_s``)
resource_limits           ``container.update`` memory/CPU limits; removal lifts them and
                          reports ``oom_kills`` (the daemon's ``oom`` events)
db_connections            ``ALTER ROLE app CONNECTION LIMIT`` + the app's sessions ended
kill_db                   PostgreSQL container killed, started again after ``down_for``
========================  ==========================================================

Latency and network faults need the local backend's fault proxy and are refused at collection.
Every fault is written to the :class:`~.ledger.Ledger` first, so a dead worker's faults are
undone by the next test::

    driver = DockerChaos(info, owner="gw0::test_x")
    with driver.apply(Fault("resource_limits", "backend", {"memory": 96 * MiB})) as fault:
        ...
    print(fault.record["oom_kills"])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import StartupTimeout
from ..sandbox import SandboxInfo
from . import database
from . import docker as effects
from .driver import chaos_dir, db_problems, watch_recovery
from .ledger import Ledger
from .ledgered import LedgeredDriver
from .markers import Fault


class DockerChaos(LedgeredDriver):
    """The :class:`~.driver.ChaosDriver` of the docker backend."""

    def __init__(self, info: SandboxInfo, owner: str = "") -> None:
        self.info = info
        self.owner = owner
        self.ledger = Ledger(chaos_dir(info))

    unsupported_hint = " (no fault proxy); use --sandbox=local for latency and network faults"

    def _guarded(self, kind: str, undo: dict[str, Any], act: Callable[[], Any]) -> tuple[str, Any]:
        key = self.ledger.add(kind, undo, self.owner)
        try:
            return key, act()
        except BaseException:
            self._undo_entry(kind, undo)
            self.ledger.remove(key)
            raise

    def _evict(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        began = time.monotonic()
        key, result = self._guarded(
            "evict",
            {"component": fault.target},
            lambda: effects.evict(self.info, fault.target, wait=False),
        )
        self.ledger.remove(key)  # started again already; only readiness is left to wait for
        record.update(result)
        return watch_recovery(lambda: effects.wait_app_ready(self.info), began)

    def _limits(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        key = self.ledger.add("resource_limits", {}, self.owner)
        try:
            data = effects.limit_resources(
                self.info,
                memory=fault.params.get("memory"),
                cpu=fault.params.get("cpu"),
                component=fault.target,
            )
        except BaseException:
            self.ledger.remove(key)
            raise
        self.ledger.update(key, data)
        record["container"] = data["container"]

        def undo() -> dict[str, Any]:
            effect = effects.restore_resources(self.info, data)
            self.ledger.remove(key)
            return effect

        return undo

    def _kill_db(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        began = time.monotonic()
        key, result = self._guarded("kill_db", {}, lambda: effects.kill_db(self.info))
        record.update(result)
        restart = _Restart(self.info, began)
        timer: threading.Timer | None = None
        down_for = fault.params.get("down_for")
        if fault.params.get("restart", True) and down_for is not None:
            timer = threading.Timer(float(down_for), restart)
            timer.daemon = True
            timer.start()

        def undo() -> dict[str, Any]:
            if timer is not None:
                timer.join()  # down for down_for, even when the body ends first
            restart()
            self.ledger.remove(key)
            return dict(restart.result)

        return undo

    # ----------------------------------------------------------------- repair, baseline

    def _undo_entry(self, kind: str, undo: dict[str, Any]) -> None:
        if kind == "evict":
            app = effects.container(self.info, undo.get("component", "backend"))
            if app.status != "running":
                app.start()
        elif kind == "resource_limits" and undo:
            effects.restore_resources(self.info, undo)
        elif kind == "db_connections" and undo:
            database.restore_connections(self.info, undo)
        elif kind == "kill_db":
            effects.start_db(self.info)

    def baseline_problems(self, timeout: float = effects.RECOVERY_TIMEOUT_S) -> list[str]:
        """Ledger empty, containers running unlimited, PostgreSQL up, role unlimited, app ready."""
        problems: list[str] = []
        if not self.ledger.empty():
            kinds = sorted({e["kind"] for e in self.ledger.entries().values()})
            problems.append(f"faults still recorded as active: {', '.join(kinds)}")
        problems.extend(effects.baseline_problems(self.info, timeout))
        if not problems:
            problems.extend(db_problems(self.info, timeout))
        return problems


class _Restart:
    """Start PostgreSQL once (timer or removal, whichever comes first) and time the recovery."""

    def __init__(self, info: SandboxInfo, began: float) -> None:
        self.info = info
        self.began = began
        self.lock = threading.Lock()
        self.done = False
        self.result: dict[str, Any] = {}

    def __call__(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            up_at = time.monotonic()
            self.result.update(effects.start_db(self.info))
            self.result["down_s"] = round(time.monotonic() - self.began, 4)
            try:
                effects.wait_app_ready(self.info)
                self.result["recovery_s"] = round(time.monotonic() - up_at, 4)
            except StartupTimeout as exc:
                self.result["recovery_error"] = str(exc).splitlines()[0]

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
latency / network faults  toxics on the sandbox's fault-proxy container (its ``db`` or
/ http_fault              ``app`` route; control API on a published loopback port), see
                          :mod:`...chaos.proxied` and :mod:`.faultproxy`
clock                     the app's libfaketime control file (bind-mounted from the sandbox
                          folder, :mod:`.clock`) rewritten; the app's ``Date`` header checked
========================  ==========================================================

Every fault is written to the :class:`~.ledger.Ledger` first, so a dead worker's faults are
undone by the next test::

    driver = DockerChaos(info, owner="gw0::test_x")
    with driver.apply(Fault("resource_limits", "backend", {"memory": 96 * MiB})) as fault:
        ...
    print(fault.record["oom_kills"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ...chaos.clock import NEUTRAL_SPEC, control_fault, read_spec, write_spec
from ...chaos.driver import CORE_KINDS, PROXY_KINDS, chaos_dir, db_problems, watch_recovery
from ...chaos.ledger import Ledger
from ...chaos.ledgered import Handler, LedgeredDriver
from ...chaos.markers import Fault
from ...chaos.proxied import ProxiedFaults
from ...errors import ChaosError
from ...faultproxy.client import ProxyClient
from ...info import SandboxInfo
from . import effects
from .clock import control_path, preload_missing, started_at


class DockerChaos(ProxiedFaults, LedgeredDriver):
    """The :class:`~.driver.ChaosDriver` of the docker backend."""

    kinds: ClassVar[frozenset[str]] = CORE_KINDS | PROXY_KINDS | {"clock"}
    proxy_missing_hint = "this docker sandbox runs without it (livesandbox_fault_proxy = false)"

    def __init__(self, info: SandboxInfo, owner: str = "") -> None:
        self.info = info
        self.owner = owner
        self.ledger = Ledger(chaos_dir(info))
        self.proxy = ProxyClient.from_info(info)

    def _handlers(self) -> dict[str, Handler]:
        return {**super()._handlers(), **self.proxy_handlers(), "clock": self._clock}

    def _guarded(self, kind: str, undo: dict[str, Any], act: Callable[[], Any]) -> tuple[str, Any]:
        key = self.ledger.add(kind, undo, self.owner)
        try:
            return key, act()
        except BaseException:
            self._undo_effect(kind, undo)
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

    def _clock(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        control = control_path(self.info)
        if control is None:
            raise ChaosError(
                "clock: the app container runs without libfaketime (livesandbox_fake_clock is "
                "off, or auto found no library or a program that cannot preload it)"
            )
        app = effects.container(self.info, "backend")
        why = preload_missing(app)
        if why:
            raise ChaosError(f"clock: {why}")
        key = self.ledger.add("clock", {"control": str(control)}, self.owner)
        path = self.info.extra.get("health_path", "/healthz")
        try:
            undo = control_fault(
                fault,
                record,
                write=lambda offset, rate: write_spec(
                    control, offset, rate, app_started_at=started_at(app)
                ),
                reset=lambda: write_spec(control),
                check_url=(self.info.endpoint + path) if self.info.endpoint else None,
            )
        except BaseException:
            self.ledger.remove(key)
            raise
        record["container"] = app.name

        def remove() -> dict[str, Any]:
            try:
                return undo()
            finally:
                self.ledger.remove(key)

        return remove

    def _stop_db(self) -> dict[str, Any]:
        result: dict[str, Any] = effects.kill_db(self.info)
        return result

    def _start_db(self) -> dict[str, Any]:
        up_at = time.monotonic()
        result: dict[str, Any] = dict(effects.start_db(self.info))
        effects.wait_app_ready(self.info)
        result["recovery_s"] = round(time.monotonic() - up_at, 4)
        return result

    # ----------------------------------------------------------------- repair, baseline

    def _undo_effect(self, kind: str, undo: dict[str, Any]) -> None:
        if kind == "toxic":
            self.undo_toxic(undo)
        elif kind == "clock":
            write_spec(Path(undo["control"]))
        elif kind == "evict":
            app = effects.container(self.info, undo.get("component", "backend"))
            if app.status != "running":
                app.start()
        elif kind == "resource_limits" and undo:
            effects.restore_resources(self.info, undo)

    def repair(self, *, only_stale: bool) -> list[str]:
        """Undo recorded faults (stale ones, or all), clear stray toxics and a moved clock."""
        done = super().repair(only_stale=only_stale)
        if not only_stale and self.proxy is not None and self.proxy.clear():
            done.append("removed stray toxics from the fault proxy")
        control = control_path(self.info)
        if (
            not only_stale
            and control is not None
            and read_spec(control) not in (None, NEUTRAL_SPEC)
        ):
            write_spec(control)
            done.append("set the app's clock back to the real time")
        return done

    def baseline_problems(self, timeout: float = effects.RECOVERY_TIMEOUT_S) -> list[str]:
        """Ledger empty, containers running unlimited, PostgreSQL up, role unlimited, app ready."""
        problems: list[str] = []
        if not self.ledger.empty():
            kinds = sorted({e["kind"] for e in self.ledger.entries().values()})
            problems.append(f"faults still recorded as active: {', '.join(kinds)}")
        problems.extend(self.toxic_problems())
        problems.extend(effects.baseline_problems(self.info, timeout))
        control = control_path(self.info)
        if control is not None and read_spec(control) not in (None, NEUTRAL_SPEC):
            problems.append(
                f"the app's clock is still moved (libfaketime spec {read_spec(control)!r})"
            )
        if not problems:
            problems.extend(db_problems(self.info, timeout))
        return problems

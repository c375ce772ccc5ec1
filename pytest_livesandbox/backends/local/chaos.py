"""Chaos on the local backend: real effects on real processes, from any process of the run.

========================  ==========================================================
fault                     effect
========================  ==========================================================
latency / network faults  toxics on the fault proxy's ``db`` or ``app`` route
evict (backend)           SIGTERM to the app; the supervisor restarts it; recovery is
                          measured until the app answers its health path again
resource_limits           cgroup v1 memory/cpu limit (or RLIMIT_AS), see :mod:`.limits`
db_connections            ``ALTER ROLE ... CONNECTION LIMIT`` + the app's sessions ended
kill_db                   fast shutdown of PostgreSQL, restarted after ``down_for``
clock                     the app's libfaketime control file rewritten (:mod:`.clock`)
========================  ==========================================================

Every fault is written to the :class:`~.ledger.Ledger` before it takes effect, so a crashed
process's faults are undone by whoever comes next::

    driver = LocalChaos(info, owner="gw0::test_x")
    with driver.apply(Fault("evict", "backend")) as fault:
        ...
    print(fault.record["recovery_s"])
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...chaos.clock import clock_setup_problems
from ...chaos.driver import CORE_KINDS, PROXY_KINDS, db_problems, proxy_off_problems
from ...chaos.ledger import Ledger
from ...chaos.ledgered import Handler, LedgeredDriver
from ...chaos.markers import Fault
from ...chaos.proxied import ProxiedFaults
from ...errors import ChaosError, StartupTimeout
from ...faultproxy.client import ProxyClient
from ...info import SandboxInfo
from ...processes import process_alive
from ...readiness import HttpReady, wait_until_ready
from . import pgctl
from .clock import (
    INSTALL_HINT,
    NEUTRAL_SPEC,
    executable,
    loaded_in,
    read_spec,
    static_command,
    write_spec,
)
from .launcher import supervisor_state
from .limits import CGROUP_LIST, apply_limits, cgroup_writable, forced_mode, undo_limits

RECOVERY_TIMEOUT_S = 30.0
_names = iter(range(1, 1 << 30))

if TYPE_CHECKING:
    from ...chaos.markers import ChaosPlan
    from ...config import SandboxConfig


class LocalChaos(ProxiedFaults, LedgeredDriver):
    """The :class:`~.driver.ChaosDriver` of the local backend."""

    kinds: ClassVar[frozenset[str]] = CORE_KINDS | PROXY_KINDS | {"clock"}
    proxy_missing_hint = "this sandbox runs without it (livesandbox_fault_proxy = false)"
    toxic_owner_pid = None  # the proxy runs here: it drops the toxics of a dead test process

    def __init__(self, info: SandboxInfo, owner: str = "") -> None:
        if not info.workdir:
            raise ChaosError("this local sandbox has no working folder")
        self.info = info
        self.owner = owner
        self.workdir = Path(info.workdir)
        self.ledger = Ledger(self.workdir)
        self.proxy = ProxyClient.from_info(info)

    # ----------------------------------------------------------------- apply

    def _handlers(self) -> dict[str, Handler]:
        return {
            **super()._handlers(),
            **self.proxy_handlers(),
            "clock": self._clock,
        }

    def _clock(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        clock = self.info.extra.get("fake_clock")
        if not clock:
            raise ChaosError(
                "clock: the app runs without libfaketime (livesandbox_fake_clock is off, the "
                f"library was missing when the sandbox started ({INSTALL_HINT}), or the app is "
                "statically linked)"
            )
        pid = self._app_pid()
        if not loaded_in(pid):
            raise ChaosError(
                f"clock: the app (pid {pid}, {executable(pid)}) did not load libfaketime: a "
                "statically linked program, or one that clears LD_PRELOAD, cannot have its "
                "clock moved; the clock fault needs a dynamically linked app"
            )
        control = Path(clock["control"])
        started = float(supervisor_state(self.workdir).get("started_at") or time.time())
        key = self.ledger.add("clock", {"control": str(control)}, self.owner)
        began = time.perf_counter()
        try:
            spec = write_spec(
                control,
                float(fault.params["offset_s"]),
                float(fault.params["rate"]),
                app_started_at=started,
            )
        except BaseException:
            write_spec(control)
            self.ledger.remove(key)
            raise
        record.update(spec=spec, pid=pid, apply_s=round(time.perf_counter() - began, 6))

        def undo() -> dict[str, Any]:
            write_spec(control)
            self.ledger.remove(key)
            return {"restored_spec": NEUTRAL_SPEC}

        return undo

    def _app_pid(self) -> int:
        pid = supervisor_state(self.workdir).get("pid")
        if not pid:
            raise ChaosError("the app is not running under the supervisor (no app pid)")
        return int(pid)

    def _evict(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        old = self._app_pid()
        began = time.monotonic()
        os.kill(old, signal.SIGTERM)
        # Like a pod's termination grace period, then SIGKILL.
        while process_alive(old):
            if time.monotonic() - began > 10:
                os.kill(old, signal.SIGKILL)
            time.sleep(0.005)
        record.update(old_pid=old, terminated_s=round(time.monotonic() - began, 4))

        def undo() -> dict[str, Any]:
            new = self._wait_replacement(old)
            ready_s = self.wait_app_ready()
            exits = supervisor_state(self.workdir).get("exits") or []
            exit_info: dict[str, Any] = next((e for e in reversed(exits) if e["pid"] == old), {})
            return {
                "new_pid": new,
                "exit_code": exit_info.get("code"),
                "recovery_s": round(time.monotonic() - began, 4),
                "ready_wait_s": round(ready_s, 4),
            }

        return undo

    def _wait_replacement(self, old: int) -> int:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            pid = supervisor_state(self.workdir).get("pid")
            if pid and pid != old:
                return int(pid)
            time.sleep(0.01)
        raise ChaosError(f"the app was not restarted within {RECOVERY_TIMEOUT_S:g}s")

    def _limits(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        pid = self._app_pid()
        before = supervisor_state(self.workdir).get("restarts", 0)
        name = f"livesandbox-{self.info.id}-{os.getpid()}-{next(_names)}"
        key = self.ledger.add("limits", {}, self.owner)
        try:
            undo_data = apply_limits(
                self.workdir,
                pid,
                memory=fault.params.get("memory"),
                cpu=fault.params.get("cpu"),
                name=name,
            )
        except BaseException:
            self.ledger.remove(key)
            raise
        self.ledger.update(key, undo_data)
        record.update(mode=undo_data["mode"], pid=pid)

        def undo() -> dict[str, Any]:
            if not process_alive(pid):
                # Killed under the limit: let the supervisor record it and start a replacement.
                self._wait_replacement(pid)
            effect = undo_limits(undo_data)
            self.ledger.remove(key)
            state = supervisor_state(self.workdir)
            effect["app_restarts"] = int(state.get("restarts", 0)) - int(before)
            exits = [e for e in state.get("exits") or [] if e["pid"] == pid]
            if exits:
                how = f"signal {exits[-1]['signal']}" if exits[-1]["signal"] else "exit"
                oom = " by the OOM killer" if effect.get("oom_kills") else ""
                effect["outcome"] = f"killed ({how}{oom}) and restarted"
                effect["recovery_s"] = round(self.wait_app_ready(), 4)
            elif "memory" not in fault.params:
                throttled = effect.get("cpu_throttled_periods", 0)
                effect["outcome"] = "throttled" if throttled else "not throttled"
            elif effect["mode"] == "rlimit":
                effect["outcome"] = "not killed: allocations over the limit fail (MemoryError)"
            elif effect.get("failcnt"):
                effect["outcome"] = "not killed: the limit was hit and memory reclaimed"
            else:
                effect["outcome"] = "not reached"
            return effect

        return undo

    def _stop_db(self) -> dict[str, Any]:
        return {"stop_s": round(pgctl.stop_postgres(self.info), 4)}

    def _start_db(self) -> dict[str, Any]:
        up_at = time.monotonic()
        result: dict[str, Any] = {"start_s": round(pgctl.start_postgres(self.info), 4)}
        self.wait_app_ready()
        result["recovery_s"] = round(time.monotonic() - up_at, 4)
        return result

    # ----------------------------------------------------------------- baseline

    def wait_app_ready(self, timeout: float = RECOVERY_TIMEOUT_S) -> float:
        """Seconds until the app answers its health path directly (not through the proxy)."""
        direct = self.info.extra.get("app_direct_endpoint")
        if not direct:
            return 0.0
        path = self.info.extra.get("health_path", "/healthz")
        return wait_until_ready(HttpReady(direct + path, what="the app"), timeout=timeout)

    def repair(self, *, only_stale: bool) -> list[str]:
        """Undo recorded faults (stale ones, or all) and clear stray toxics; say what was done."""
        done = super().repair(only_stale=only_stale)
        if not only_stale and self.proxy is not None and self.proxy.clear():
            done.append("removed stray toxics from the fault proxy")
        clock = self.info.extra.get("fake_clock")
        if not only_stale and clock:
            control = Path(clock["control"])
            if read_spec(control) not in (None, NEUTRAL_SPEC):
                write_spec(control)
                done.append("set the app's clock back to the real time")
        return done

    def _undo_effect(self, kind: str, undo: dict[str, Any]) -> None:
        if kind == "toxic":
            self.undo_toxic(undo)
        elif kind == "limits" and undo:
            undo_limits(undo)
        elif kind == "clock":
            write_spec(Path(undo["control"]))

    def baseline_problems(self, timeout: float = RECOVERY_TIMEOUT_S) -> list[str]:
        """Check proxy, ledger, limits, PostgreSQL, role limit and app readiness."""
        problems: list[str] = []
        if not self.ledger.empty():
            kinds = sorted({e["kind"] for e in self.ledger.entries().values()})
            problems.append(f"faults still recorded as active: {', '.join(kinds)}")
        problems.extend(self.toxic_problems())
        if (self.workdir / CGROUP_LIST).exists():
            problems.append("the app still runs under a chaos cgroup limit")
        clock = self.info.extra.get("fake_clock")
        if clock and read_spec(Path(clock["control"])) not in (None, NEUTRAL_SPEC):
            spec = read_spec(Path(clock["control"]))
            problems.append(f"the app's clock is still moved (libfaketime spec {spec!r})")
        problems.extend(db_problems(self.info, timeout))
        if self.info.endpoint:
            path = self.info.extra.get("health_path", "/healthz")
            try:
                wait_until_ready(HttpReady(self.info.endpoint + path), timeout=timeout)
            except StartupTimeout as exc:
                problems.append(f"the app is not ready again: {str(exc).splitlines()[0]}")
        return problems


def local_fault_problems(plan: ChaosPlan, config: SandboxConfig) -> list[str]:
    """Why this run cannot inject ``plan`` locally (collection-time check)."""
    problems = proxy_off_problems(plan, config.fault_proxy)
    for fault in plan.faults:
        if fault.kind in ("evict", "resource_limits") and not config.app_cmd:
            problems.append(
                f"@{fault.marker}: component={fault.target!r}: this sandbox runs no app"
            )
        if fault.kind == "resource_limits" and "cpu" in fault.params:
            if forced_mode() == "rlimit" or not cgroup_writable("cpu"):
                problems.append(
                    "@resource_limits: cpu= needs a writable cgroup v1 cpu controller "
                    "(root); this machine offers only memory limits by rlimit"
                )
        if fault.kind == "clock":
            problems.extend(_clock_problems(config))
    return problems


def _clock_problems(config: SandboxConfig) -> list[str]:
    problems = clock_setup_problems(config, has_app=bool(config.app_cmd))
    if problems or not config.app_cmd:  # no app: already said
        return problems
    static = static_command(config.app_cmd)
    if static:
        return [
            f"@clock: the app command's program {static} is statically linked: LD_PRELOAD "
            "cannot load libfaketime into it; the clock marker needs a dynamically linked app"
        ]
    return []

"""The ``chaos`` fixture's object: faults injected imperatively, all undone and verified after.

Arguments are the markers' (same names, units and validation)::

    def test_slow_db(chaos, live_http):
        with chaos.latency(300, target="db"):
            assert live_http.get("/items").elapsed.total_seconds() >= 0.3
        chaos.evict("backend")                 # returns once the app is Ready again
        chaos.limit("backend", memory="96Mi")  # in force until the test ends (or .remove())
        with chaos.db_connections(max=1): ...
        with chaos.kill_db(down_for="1s"): ...
        with chaos.network_fault("reset", target="app"): ...

Each fault's record (kind, target, params, ``applied_at``, ``removed_at``, effect such as
``recovery_s``) goes into the test's report under ``chaos``.
"""

from __future__ import annotations

import threading
from typing import Any

from .driver import ActiveFault, ChaosDriver
from .markers import ChaosPlan, Fault, parse_marker


class Chaos:
    """Inject faults into the run's sandbox for one test."""

    def __init__(self, driver: ChaosDriver, records: list[dict[str, Any]]) -> None:
        self.driver = driver
        self.records = records
        self.active: list[ActiveFault] = []
        self._timers: list[tuple[threading.Timer, Fault]] = []
        self._late_errors: list[str] = []
        self._fired: list[Fault] = []
        self._lock = threading.Lock()

    def apply(self, fault: Fault) -> ActiveFault:
        """Inject a parsed fault; it is undone at the end of the test at the latest."""
        active = self.driver.apply(fault)
        with self._lock:
            self.active.append(active)
            self.records.append(active.record)
        return active

    def _one(self, marker: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ActiveFault:
        (fault,) = parse_marker(marker, args, kwargs)
        return self.apply(fault)

    def latency(self, ms: float, **kwargs: Any) -> ActiveFault:
        """Add ``ms`` to each request/response exchange on ``target`` ("db" or "app")."""
        return self._one("latency", (ms,), kwargs)

    def network_fault(self, kind: str, **kwargs: Any) -> ActiveFault:
        """``reset``, ``timeout``, ``bandwidth`` (``rate_kbps=``) or ``slow_close``."""
        return self._one("network_fault", (kind,), kwargs)

    def evict(self, component: str = "backend", *, wait: bool = True) -> dict[str, Any]:
        """Evict the component; with ``wait`` return once the replacement is Ready."""
        active = self._one("evict_pod", (component,), {})
        return active.remove() if wait else active.record

    def limit(self, component: str = "backend", **kwargs: Any) -> ActiveFault:
        """Run the component under ``memory=`` / ``cpu=`` limits."""
        return self._one("resource_limits", (component,), kwargs)

    def db_connections(self, max: int) -> ActiveFault:
        """Let the app's database role hold at most ``max`` connections."""
        return self._one("db_connections", (), {"max": max})

    def kill_db(self, **kwargs: Any) -> ActiveFault:
        """Stop PostgreSQL; ``restart=True`` brings it back after ``down_for`` (default 1s)."""
        kwargs.pop("when", None)
        return self._one("kill_db", (), kwargs)

    # ----------------------------------------------------------------- plans

    def start_plan(self, plan: ChaosPlan) -> None:
        """Apply the marker plan: ``before`` faults now, ``during`` ones on timers."""
        for fault in plan.faults:
            if fault.when == "during":
                timer = threading.Timer(fault.delay, self._late, (fault,))
                timer.daemon = True
                self._timers.append((timer, fault))
                timer.start()
            else:
                self.apply(fault)

    def _late(self, fault: Fault) -> None:
        self._fired.append(fault)
        try:
            self.apply(fault)
        except Exception as exc:
            self._late_errors.append(f"{fault.marker}: {type(exc).__name__}: {exc}")

    def remove_all(self) -> list[str]:
        """Stop timers and undo every fault (newest first); returns the errors, never raises."""
        errors = []
        for timer, fault in self._timers:
            timer.cancel()
            timer.join()
            if fault not in self._fired:
                # Say so in the report rather than pretend the fault happened.
                self.records.append(
                    {**fault.describe(), "skipped": "the test body ended before the delay"}
                )
        self._timers.clear()
        errors.extend(self._late_errors)
        self._late_errors.clear()
        with self._lock:
            active = list(reversed(self.active))
        for handle in active:
            try:
                handle.remove()
            except Exception as exc:
                errors.append(f"removing {handle.fault.kind} on {handle.fault.target}: {exc}")
        return errors

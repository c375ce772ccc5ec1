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
        with chaos.clock(offset="+1h"): ...      # the app's clock only; rate=60 speeds it up

    def test_retries_twice(chaos, live_http):
        fault = chaos.http_fault(status=503, times=2, path="/items")
        assert live_http.get("/items").status_code == 503
        ...
        assert chaos.hits(fault) == 2 and chaos.requests_seen(fault) == 3

Each fault's record (kind, target, params, ``applied_at``, ``removed_at``, ``hits``, effect
such as ``recovery_s``) goes into the test's report under ``chaos``. A proxy fault that
affected nothing is listed by :meth:`Chaos.unobserved` (the plugin turns that into
:class:`~pytest_livesandbox.errors.ChaosNotObserved` unless the fault has ``require_hit=False``).
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ChaosError
from .driver import ActiveFault, ChaosDriver
from .markers import ChaosPlan, Fault, parse_marker


class Chaos:
    """Inject faults into the run's sandbox for one test."""

    def __init__(
        self,
        driver: ChaosDriver,
        records: list[dict[str, Any]],
        scope: str = "",
        *,
        exclusive: bool = True,
    ) -> None:
        self.driver = driver
        self.records = records
        self.scope = scope  # this test's token: client -> app faults act on its requests only
        self.exclusive = exclusive  # the test holds the sandbox alone
        self.body_failed = False
        self.active: list[ActiveFault] = []
        self._timers: list[tuple[threading.Timer, Fault]] = []
        self._late_errors: list[str] = []
        self._fired: list[Fault] = []
        self._lock = threading.Lock()

    def apply(self, fault: Fault) -> ActiveFault:
        """Inject a parsed fault; it is undone at the end of the test at the latest."""
        if not fault.scoped and not self.exclusive:
            raise ChaosError(
                f"@{fault.marker} on {fault.target!r} acts on the whole sandbox, but this test "
                "shares it with others (it has only client -> app faults)"
            )
        # Alone on the sandbox, a client -> app fault acts on all traffic (clients of the test's
        # own too); sharing it, only on the requests that carry this test's scope.
        active = self.driver.apply(fault, "" if self.exclusive else self.scope)
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

    def http_fault(self, status: int | None = None, **kwargs: Any) -> ActiveFault:
        """Answer (``status=``), reset (``abort=True``) or delay (``delay=``) matching requests."""
        return self._one("http_fault", () if status is None else (status,), kwargs)

    def hits(self, handle: ActiveFault) -> int:
        """How many connections / requests the fault has affected so far."""
        return int(self._counters(handle).get("hits") or 0)

    def requests_seen(self, handle: ActiveFault) -> int:
        """How many requests an ``http_fault`` matched so far (faulted or passed)."""
        return int(self._counters(handle).get("requests_seen") or 0)

    def _counters(self, handle: ActiveFault) -> dict[str, Any]:
        if handle.removed:
            return handle.record
        return self.driver.counters(handle.record)

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

    def clock(self, offset: str | None = None, **kwargs: Any) -> ActiveFault:
        """Move the app's clock by ``offset`` (``"+1h"``) and/or run it ``rate=`` times as fast."""
        kwargs.pop("when", None)
        if offset is not None:
            kwargs["offset"] = offset
        return self._one("clock", (), kwargs)

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

    def unobserved(self) -> list[str]:
        """Removed faults that affected nothing although they had to (``require_hit``)."""
        missed = []
        with self._lock:
            active = list(self.active)
        for handle in active:
            fault = handle.fault
            if not (fault.counted and fault.require_hit and handle.record.get("hits") == 0):
                continue
            missed.append(f"{describe(fault)} affected 0 {_unit(fault)}: {_why(handle.record)}")
        return missed


def describe(fault: Fault) -> str:
    """The fault as the user wrote it, roughly: ``@latency(ms=300, target='db')``."""
    hidden = {"direction", "action", "jitter"}
    args = [f"{k}={v!r}" for k, v in fault.params.items() if k not in hidden]
    return f"@{fault.marker}({', '.join([*args, f'target={fault.target!r}'])})"


def _unit(fault: Fault) -> str:
    return "requests" if fault.scoped else "connections"


def _why(record: dict[str, Any]) -> str:
    if record.get("target") == "db":
        return "the test never reached the database (through the app)"
    seen = record.get("requests_seen")
    if record.get("unparsed"):
        return (
            f"{record['unparsed']} connection(s) to the app were not HTTP/1.x (TLS, HTTP/2, "
            "an upgrade), which the proxy passes through untouched"
        )
    if seen:
        return f"it matched {seen} request(s) but fired on none (check times / every / rate)"
    matcher = " matching path / method" if record.get("kind") == "http" else ""
    return (
        f"no request{matcher} of this test reached the app through live_http / "
        "live_async_http (a client of your own must send the X-Livesandbox-Test header, "
        "see pytest_livesandbox.chaos.scope); require_hit=False allows this"
    )

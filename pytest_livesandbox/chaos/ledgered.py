"""What every backend's chaos driver shares: the ledger, its repair loop, role limits, kill_db.

``kill_db`` is written once: stop now, start again after ``down_for`` or at removal, whichever
comes first; each backend only says how it stops and starts its PostgreSQL.

A driver subclass sets ``info``, ``owner`` and ``ledger``, lists the fault kinds it injects in
``kinds`` (its backend's ``supported_faults``) and implements the effects::

    class DockerChaos(LedgeredDriver):
        kinds = CORE_KINDS
        def _evict(self, fault, record): ...
        def _stop_db(self): ...             # -> fields for the report (``stop_s``)
        def _start_db(self): ...            # -> fields (``start_s``, ``recovery_s``); raises
        def _undo_effect(self, kind, undo): ...   # the backend's own ledger kinds
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import ChaosError
from ..info import SandboxInfo
from ..postgres import roles as database
from .driver import CORE_KINDS, ActiveFault
from .ledger import Ledger
from .markers import Fault

Undo = Callable[[], dict[str, Any]]
Handler = Callable[[Fault, dict[str, Any]], Undo]


class LedgeredDriver:
    """Base of the local, docker and kube drivers."""

    info: SandboxInfo
    owner: str
    ledger: Ledger
    #: The fault kinds this driver injects; its backend declares them as ``supported_faults``.
    kinds: ClassVar[frozenset[str]] = CORE_KINDS

    def apply(self, fault: Fault, scope: str = "") -> ActiveFault:
        """Inject one fault now; a scoped (client -> app) fault acts on ``scope``'s requests."""
        record: dict[str, Any] = {**fault.describe(), "applied_at": round(time.time(), 4)}
        if scope and fault.scoped:
            record["scope"] = scope
        handler = self._handlers().get(fault.kind) if fault.kind in self.kinds else None
        if handler is None:
            raise ChaosError(f"the {self.info.backend} backend cannot inject {fault.kind!r}")
        return ActiveFault(fault, record, handler(fault, record))

    def _handlers(self) -> dict[str, Handler]:
        return {
            "evict": self._evict,
            "resource_limits": self._limits,
            "db_connections": self._db_connections,
            "kill_db": self._kill_db,
        }

    def counters(self, record: dict[str, Any]) -> dict[str, Any]:
        """What a fault in force has affected so far; only proxy faults count."""
        raise ChaosError(f"the {self.info.backend} backend counts no {record.get('kind')} hits")

    def _evict(self, fault: Fault, record: dict[str, Any]) -> Undo:
        raise NotImplementedError

    def _limits(self, fault: Fault, record: dict[str, Any]) -> Undo:
        raise NotImplementedError

    def _kill_db(self, fault: Fault, record: dict[str, Any]) -> Undo:
        # Recorded before it takes effect: a worker dying while the database is down gets repaired.
        key = self.ledger.add("kill_db", {}, self.owner)
        began = time.monotonic()
        try:
            record.update(self._stop_db())
        except BaseException:
            with contextlib.suppress(Exception):
                self._start_db()
            self.ledger.remove(key)
            raise
        restart = _RestartOnce(self._start_db, began)
        timer: threading.Timer | None = None
        down_for = fault.params.get("down_for")
        if fault.params.get("restart", True) and down_for is not None:
            timer = threading.Timer(float(down_for), restart)
            timer.daemon = True
            timer.start()

        def undo() -> dict[str, Any]:
            if timer is not None:
                timer.cancel()
            restart()  # no-op if the timer did it; the lock waits for a restart under way
            self.ledger.remove(key)
            if "recovery_error" in restart.result:
                raise ChaosError(
                    f"PostgreSQL did not come back: {restart.result['recovery_error']}"
                )
            return dict(restart.result)

        return undo

    def _stop_db(self) -> dict[str, Any]:
        raise NotImplementedError

    def _start_db(self) -> dict[str, Any]:
        raise NotImplementedError

    def _undo_entry(self, kind: str, undo: dict[str, Any]) -> None:
        if kind == "db_connections":
            if undo:
                database.restore_connections(self.info, undo)
        elif kind == "kill_db":
            self._start_db()
        else:
            self._undo_effect(kind, undo)

    def _undo_effect(self, kind: str, undo: dict[str, Any]) -> None:
        """Undo a recorded fault of the backend's own kinds (evict, limits, toxics)."""
        raise NotImplementedError

    def clean(self) -> bool:
        """No fault recorded (one ``listdir``)."""
        return self.ledger.empty()

    def repair(self, *, only_stale: bool) -> list[str]:
        """Undo recorded faults (stale ones, or all); say what was done."""
        done = []
        entries = self.ledger.stale() if only_stale else self.ledger.entries()
        for key, entry in entries.items():
            try:
                self._undo_entry(entry["kind"], entry["undo"])
            except Exception as exc:
                done.append(f"could not undo {entry['kind']} of {entry['owner']!r}: {exc}")
                continue
            self.ledger.remove(key)
            done.append(f"undid {entry['kind']} left by {entry['owner'] or entry['owner_pid']}")
        return done

    def _db_connections(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        # Recorded before it takes effect, so a worker dying right after still gets repaired.
        key = self.ledger.add("db_connections", {}, self.owner)
        try:
            data = database.limit_connections(self.info, int(fault.params["max"]))
        except BaseException:
            self.ledger.remove(key)
            raise
        self.ledger.update(key, data)
        record.update({k: v for k, v in data.items() if k != "previous"})

        def undo() -> dict[str, Any]:
            database.restore_connections(self.info, data)
            self.ledger.remove(key)
            return {"restored_limit": data["previous"]}

        return undo


class _RestartOnce:
    """Start PostgreSQL again once (timer or removal, whichever comes first), timing it."""

    def __init__(self, start: Callable[[], dict[str, Any]], began: float) -> None:
        self.start = start
        self.began = began
        self.lock = threading.Lock()
        self.done = False
        self.result: dict[str, Any] = {}

    def __call__(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            self.result["down_s"] = round(time.monotonic() - self.began, 4)
            try:
                self.result.update(self.start())
            except Exception as exc:
                self.result["recovery_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]

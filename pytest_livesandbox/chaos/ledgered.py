"""What every backend's chaos driver shares: the fault ledger, its repair loop, role limits.

A driver subclass sets ``info``, ``owner`` and ``ledger`` and implements ``_undo_entry``::

    class DockerChaos(LedgeredDriver):
        def _undo_entry(self, kind, undo): ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import ChaosError
from ..sandbox import SandboxInfo
from . import database
from .driver import ActiveFault
from .ledger import Ledger
from .markers import Fault

Undo = Callable[[], dict[str, Any]]
Handler = Callable[[Fault, dict[str, Any]], Undo]


class LedgeredDriver:
    """Base of the local, docker and kube drivers."""

    info: SandboxInfo
    owner: str
    ledger: Ledger
    #: Appended to "the X backend cannot inject K" for kinds without a handler.
    unsupported_hint = ""

    def apply(self, fault: Fault, scope: str = "") -> ActiveFault:
        """Inject one fault now; a scoped (client -> app) fault acts on ``scope``'s requests."""
        record: dict[str, Any] = {**fault.describe(), "applied_at": round(time.time(), 4)}
        if scope and fault.scoped:
            record["scope"] = scope
        handler = self._handlers().get(fault.kind)
        if handler is None:
            raise ChaosError(
                f"the {self.info.backend} backend cannot inject {fault.kind!r}"
                f"{self.unsupported_hint}"
            )
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
        raise NotImplementedError

    def _undo_entry(self, kind: str, undo: dict[str, Any]) -> None:
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

"""What every backend's chaos driver provides, and the helpers they share.

A driver works from :class:`~pytest_livesandbox.info.SandboxInfo` alone (xdist workers have
nothing else), applies one :class:`~pytest_livesandbox.chaos.markers.Fault` at a time and hands
back an :class:`ActiveFault` whose :meth:`~ActiveFault.remove` undoes it and measures the effect.
Each backend hands out its own (``backend.chaos(info, owner)``), and says which fault kinds it
supports (``backend.supported_faults``); nothing here knows a backend by name::

    driver = load_backend(info.backend).chaos(info, owner="gw0::test_x")
    with driver.apply(Fault("latency", "db", {"ms": 300, "jitter": 0, "direction": "both"})):
        ...
    assert driver.baseline_problems(timeout=10) == []
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..errors import ChaosError
from ..info import SandboxInfo
from ..locations import state_root
from ..postgres import roles
from .ledger import Ledger
from .markers import ChaosPlan, Fault

#: Fault kinds the fault proxy injects (``latency``, the ``network_fault`` kinds, ``http``).
PROXY_KINDS = frozenset({"latency", "reset", "timeout", "bandwidth", "slow_close", "http"})
#: Fault kinds every ledgered driver injects through its backend's own API.
CORE_KINDS = frozenset({"evict", "resource_limits", "db_connections", "kill_db"})


@dataclass
class ActiveFault:
    """A fault in force. Remove it (or leave the ``with`` block) to undo it; idempotent.

    ``record`` is what the test report shows: kind, target, params, ``applied_at``,
    ``removed_at`` (Unix seconds) and the measured effect (``recovery_s``, ``oom_kills``, ...).
    """

    fault: Fault
    record: dict[str, Any]
    undo: Callable[[], dict[str, Any]]
    removed: bool = False
    error: str | None = field(default=None, repr=False)

    def remove(self) -> dict[str, Any]:
        """Undo the fault; returns the record with the effect measured while undoing."""
        if self.removed:
            return self.record
        self.removed = True
        try:
            self.record.update(self.undo())
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.record["remove_error"] = self.error
            raise
        finally:
            self.record["removed_at"] = round(time.time(), 4)
        return self.record

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


class ChaosDriver(Protocol):
    """One backend's way of injecting faults into a running sandbox."""

    def apply(self, fault: Fault, scope: str = "") -> ActiveFault:
        """Inject ``fault`` now; it stays until the returned handle is removed.

        A scoped fault (:attr:`Fault.scoped`) acts only on requests carrying ``scope``.
        """

    def counters(self, record: dict[str, Any]) -> dict[str, Any]:
        """``hits`` (and ``requests_seen``) of a fault in force, from its record."""

    def repair(self, *, only_stale: bool) -> list[str]:
        """Undo faults left behind (by dead processes, or all); returns what was undone."""

    def clean(self) -> bool:
        """Cheap check: no fault recorded anywhere (run before every test)."""

    def baseline_problems(self, timeout: float) -> list[str]:
        """Why the sandbox is not back to normal (empty when it is), waiting up to ``timeout``."""


def chaos_dir(info: SandboxInfo) -> Path:
    """Where a sandbox's fault ledger and chaos lock live (shared by every process of the run)."""
    if info.workdir:
        return Path(info.workdir)
    path = state_root() / f"chaos-{info.id}"
    path.mkdir(mode=0o755, exist_ok=True)
    return path


def remove_chaos_dir(info: SandboxInfo) -> None:
    """Remove the chaos folder of a sandbox without a working folder, unless a fault is recorded.

    A recorded fault stays for whoever attaches next (``--sandbox-attach``) to repair.
    """
    path = state_root() / f"chaos-{info.id}"
    if path.exists() and Ledger(path).empty():
        shutil.rmtree(path, ignore_errors=True)


def proxy_off_problems(plan: ChaosPlan, fault_proxy: bool) -> list[str]:
    """Faults the fault proxy injects cannot run in a sandbox without it (collection time).

    >>> from pytest_livesandbox.chaos.markers import plan_from_markers
    >>> proxy_off_problems(plan_from_markers([("latency", (), {"ms": 100})]), False)[0][:40]
    '@latency: needs the fault proxy, which i'
    """
    return [
        f"@{fault.marker}: needs the fault proxy, which is off "
        "(livesandbox_fault_proxy = false); turn it on or drop the marker"
        for fault in plan.faults
        if fault.kind in PROXY_KINDS and not fault_proxy
    ]


def db_problems(info: SandboxInfo, timeout: float) -> list[str]:
    """PostgreSQL refuses connections, or the app role still has a connection limit."""
    if info.db is None or not info.db.admin_user:
        return []
    deadline = time.monotonic() + timeout
    while True:
        try:
            limit = roles.role_limit(info)
        except Exception as exc:
            if time.monotonic() > deadline:
                return [f"PostgreSQL does not accept connections: {exc}"]
            time.sleep(0.1)
            continue
        if limit != -1:
            return [f"the app role's connection limit is {limit}, not unlimited"]
        return []


def watch_recovery(wait_ready: Callable[[], float], began: float) -> Callable[[], dict[str, Any]]:
    """Time the recovery in the background from now; the returned undo waits for it.

    ``recovery_s`` is measured from ``began`` (a ``time.monotonic()``) to the moment the app
    answered again, not to the end of the test body.
    """
    result: dict[str, Any] = {}

    def watch() -> None:
        try:
            wait_ready()
            result["recovery_s"] = round(time.monotonic() - began, 4)
        except Exception as exc:
            result["recovery_error"] = str(exc).splitlines()[0]

    thread = threading.Thread(target=watch, name="livesandbox-recovery", daemon=True)
    thread.start()

    def undo() -> dict[str, Any]:
        thread.join()
        if "recovery_error" in result:
            raise ChaosError(f"the app did not recover: {result['recovery_error']}")
        return dict(result)

    return undo

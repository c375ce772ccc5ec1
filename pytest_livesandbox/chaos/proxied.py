"""Latency and network faults as toxics on a fault proxy that runs away from the test process.

Every backend with the proxy (local, docker, kube, gke) injects them here, with the same
semantics: ``latency`` with ``direction="both"`` puts half of ``ms`` on each way, so a
request/response exchange gains ``ms``; a scoped fault (client -> app, the test shares the
sandbox) carries the test's scope token; removal returns the toxic's ``hits``. A proxy in a pod or
container cannot see the test process's pid: toxics are sent with ``owner_pid`` 0 and a TTL, and
the fault ledger undoes what a crashed worker left::

    class KubeChaos(ProxiedFaults, LedgeredDriver):
        def _handlers(self):
            return {**super()._handlers(), **self.proxy_handlers()}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ChaosError
from ..faultproxy.client import ProxyClient, toxic_counters
from ..info import SandboxInfo
from .driver import PROXY_KINDS
from .ledger import Ledger
from .markers import Fault

TOXIC_TTL_S = 900.0  # a hung (not dead) owner loses its toxics after this long
Undo = Callable[[], dict[str, Any]]


def toxic_params(fault: Fault) -> tuple[str, dict[str, Any]]:
    """``(direction, params)`` of the toxic for ``fault`` (latency "both" split in halves).

    ``http`` faults keep their marker params as they are (the proxy validates them again).
    """
    direction = str(fault.params.get("direction", "both"))
    if fault.kind == "http":
        return direction, dict(fault.params)
    params = {k: float(v) for k, v in fault.params.items() if k != "direction"}
    if fault.kind == "latency" and direction == "both":
        # ms is what one request/response exchange gains: half on the way in, half out.
        params = {"ms": params["ms"] / 2, "jitter": params.get("jitter", 0.0) / 2}
    return direction, params


class ProxiedFaults:
    """Mixin for drivers whose sandbox has a fault proxy reachable through ``self.proxy``."""

    info: SandboxInfo
    owner: str
    ledger: Ledger
    proxy: ProxyClient | None
    #: what the proxy cannot be told: where it runs and how to turn it on
    proxy_missing_hint = "this sandbox runs without the fault proxy (livesandbox_fault_proxy)"
    #: the pid the proxy watches for each toxic: 0 where it cannot see ours (a container, a pod);
    #: None is this process (a proxy on this machine drops a dead owner's toxics itself)
    toxic_owner_pid: int | None = 0

    def proxy_handlers(self) -> dict[str, Callable[[Fault, dict[str, Any]], Undo]]:
        """A handler for every proxy fault kind."""
        return dict.fromkeys(PROXY_KINDS, self._toxic)

    def _toxic(self, fault: Fault, record: dict[str, Any]) -> Undo:
        proxy = self.proxy
        if proxy is None:
            raise ChaosError(f"{fault.kind} needs the fault proxy, but {self.proxy_missing_hint}")
        direction, params = toxic_params(fault)
        key = self.ledger.add("toxic", {"route": fault.target}, self.owner)
        try:
            toxic = proxy.add_toxic(
                fault.target,
                fault.kind,
                direction,
                params,
                owner=self.owner,
                ttl_s=TOXIC_TTL_S,
                owner_pid=self.toxic_owner_pid,
                scope=str(record.get("scope", "")),
            )
        except BaseException:
            self.ledger.remove(key)
            raise
        self.ledger.update(key, {"route": fault.target, "id": toxic["id"]})
        record["toxic_id"] = toxic["id"]

        def undo() -> dict[str, Any]:
            removed = proxy.remove_toxic(fault.target, toxic["id"])
            self.ledger.remove(key)
            return toxic_counters(removed, fault.kind)

        return undo

    def counters(self, record: dict[str, Any]) -> dict[str, Any]:
        """What a proxy fault in force has affected so far (``hits``, ``requests_seen``)."""
        if self.proxy is None or "toxic_id" not in record:
            raise ChaosError(f"{record.get('kind')} on {record.get('target')} counts nothing")
        toxic = self.proxy.toxic(str(record["target"]), str(record["toxic_id"]))
        return toxic_counters(toxic, str(record.get("kind")))

    def undo_toxic(self, undo: dict[str, Any]) -> None:
        """Repair one ledger entry of kind ``toxic`` (all toxics when its id was never known)."""
        if self.proxy is None:
            return
        if "id" in undo:
            self.proxy.remove_toxic(undo["route"], undo["id"])
        else:
            self.proxy.clear()

    def toxic_problems(self) -> list[str]:
        """The proxy does not answer, or still carries toxics."""
        if self.proxy is None:
            return []
        try:
            toxics = self.proxy.toxics()
        except ChaosError as exc:
            return [str(exc)]
        if not toxics:
            return []
        names = ", ".join(f"{t['kind']} on {t['route']}" for t in toxics)
        return [f"the fault proxy still has toxics: {names}"]

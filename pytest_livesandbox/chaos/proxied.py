"""Latency and network faults as toxics on a fault proxy that runs away from the test process.

The kube, gke and docker sandboxes run the proxy in a pod or container, whose pid namespace
cannot see the test process: toxics are sent with ``owner_pid`` 0 and a TTL, and the fault
ledger undoes what a crashed worker left. The semantics are the local backend's: ``latency``
with ``direction="both"`` puts half of ``ms`` on each way, so a request/response exchange gains
``ms``::

    class KubeChaos(ProxiedFaults, LedgeredDriver):
        def _handlers(self):
            return {**super()._handlers(), **self.proxy_handlers()}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ChaosError
from ..faultproxy.client import ProxyClient
from ..info import SandboxInfo
from .driver import PROXY_KINDS
from .ledger import Ledger
from .markers import Fault

TOXIC_TTL_S = 900.0  # a hung (not dead) owner loses its toxics after this long
Undo = Callable[[], dict[str, Any]]


def toxic_params(fault: Fault) -> tuple[str, dict[str, float]]:
    """``(direction, params)`` of the toxic for ``fault`` (latency "both" split in halves)."""
    params = {k: float(v) for k, v in fault.params.items() if k != "direction"}
    direction = str(fault.params.get("direction", "both"))
    if fault.kind == "latency" and direction == "both":
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
                owner_pid=0,
            )
        except BaseException:
            self.ledger.remove(key)
            raise
        self.ledger.update(key, {"route": fault.target, "id": toxic["id"]})
        record["toxic_id"] = toxic["id"]

        def undo() -> dict[str, Any]:
            proxy.remove_toxic(fault.target, toxic["id"])
            self.ledger.remove(key)
            return {}

        return undo

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

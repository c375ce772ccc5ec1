"""Talk to the fault proxy's control API from any process (stdlib ``http.client``).

The proxy's address travels in :attr:`SandboxInfo.extra` (``fault_proxy``) and its control
token, when it has one (the docker proxy), in :attr:`SandboxInfo.tokens` (``fault_proxy``), so
xdist workers and reusing runs reach it without the backend objects::

    client = ProxyClient.from_info(info)
    toxic = client.add_toxic("db", "latency", "downstream", {"ms": 150}, owner="gw0")
    ...
    client.remove_toxic("db", toxic["id"])
"""

from __future__ import annotations

import http.client
import json
import os
from typing import Any
from urllib.parse import quote

from ..errors import ChaosError
from ..info import SandboxInfo

EXTRA_KEY = "fault_proxy"


class ProxyClient:
    """A thin JSON-over-HTTP client; each call opens one loopback connection.

    With a ``token`` every request carries ``Authorization: Bearer <token>`` (never shown in
    ``repr`` or in error messages).
    """

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, token: str = ""
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._token = token

    def __repr__(self) -> str:
        return f"ProxyClient({self.host}:{self.port}, token={'***' if self._token else None})"

    @classmethod
    def from_info(cls, info: SandboxInfo) -> ProxyClient | None:
        """The sandbox's proxy, or ``None`` when it runs without one."""
        data = info.extra.get(EXTRA_KEY)
        if not data:
            return None
        return cls(int(data["control_port"]), token=info.tokens.get(EXTRA_KEY, ""))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One control call; raises :class:`ChaosError` on transport errors or non-2xx."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = json.loads(response.read() or b"null")
        except (OSError, ValueError) as exc:
            raise ChaosError(
                f"the fault proxy on 127.0.0.1:{self.port} did not answer {method} {path}: "
                f"{exc}. Hint: is the sandbox still running?"
            ) from None
        finally:
            conn.close()
        if response.status == 401:
            raise ChaosError(
                f"fault proxy: {method} {path} -> 401: {data}. Hint: the sandbox's control "
                "token is missing or not this proxy's (a reused sandbox's secrets.json lost?)"
            )
        if response.status >= 300:
            raise ChaosError(f"fault proxy: {method} {path} -> {response.status}: {data}")
        return data

    def health(self) -> bool:
        """True when the proxy answers."""
        try:
            return bool(self.request("GET", "/health").get("ok"))
        except ChaosError:
            return False

    def routes(self) -> dict[str, Any]:
        """Every route with its toxics and open links."""
        return dict(self.request("GET", "/routes"))

    def set_route(
        self, name: str, upstream: str, listen_port: int = 0, protocol: str = "tcp"
    ) -> int:
        """Create (or repoint) a route; returns its listening port.

        ``protocol="http"`` parses HTTP/1.1 requests: needed for ``http`` toxics and scopes.
        """
        body = {"upstream": upstream, "listen_port": listen_port, "protocol": protocol}
        route = self.request("PUT", f"/routes/{name}", body)
        return int(route["listen_port"])

    def add_toxic(
        self,
        route: str,
        kind: str,
        direction: str,
        params: dict[str, Any],
        *,
        owner: str = "",
        ttl_s: float = 0.0,
        owner_pid: int | None = None,
        scope: str = "",
    ) -> dict[str, Any]:
        """Install a toxic owned by this process (removed by the proxy if we die).

        With ``scope`` (an ``http`` route only) it acts on the requests that carry that value in
        the ``X-Livesandbox-Test`` header, and on their responses.
        """
        body = {
            "scope": scope,
            "kind": kind,
            "direction": direction,
            "params": params,
            "owner": owner,
            "owner_pid": os.getpid() if owner_pid is None else owner_pid,
            "ttl_s": ttl_s,
        }
        return dict(self.request("POST", f"/routes/{route}/toxics", body))

    def remove_toxic(self, route: str, toxic_id: str) -> dict[str, Any] | None:
        """Remove one toxic; returns it as it was (``hits``, ...), None if already gone."""
        try:
            answer = self.request("DELETE", f"/routes/{route}/toxics/{toxic_id}")
        except ChaosError as exc:
            if "404" in str(exc):
                return None
            raise
        return dict(answer.get("toxic") or {})

    def toxic(self, route: str, toxic_id: str) -> dict[str, Any]:
        """One installed toxic with its counters (``hits``, ``requests_seen``)."""
        return dict(self.request("GET", f"/routes/{route}/toxics/{toxic_id}"))

    def clear(self, owner: str | None = None) -> int:
        """Remove all toxics (or one owner's); returns how many."""
        path = "/toxics" + (f"?owner={quote(owner, safe='')}" if owner else "")
        return int(self.request("DELETE", path)["removed"])

    def toxics(self) -> list[dict[str, Any]]:
        """Every installed toxic, with its route name under ``route``."""
        found = []
        for name, route in self.routes().items():
            for toxic in route["toxics"]:
                found.append({**toxic, "route": name})
        return found


def toxic_counters(toxic: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """A toxic's counters as a fault record shows them (every backend's driver uses this).

    ``hits`` is None when the proxy had dropped the toxic already (expired, owner gone).
    """
    if toxic is None:
        return {"hits": None}
    found = {"hits": int(toxic.get("hits", 0))}
    if kind == "http":
        found["requests_seen"] = int(toxic.get("requests_seen", 0))
    if toxic.get("unparsed"):  # connections no http_fault or scope could act on
        found["unparsed"] = int(toxic["unparsed"])
    return found

"""A small asyncio TCP/HTTP fault proxy with a JSON control API on loopback.

Standard library only, and runnable by path, so it starts in tens of milliseconds next to
PostgreSQL::

    python server.py --state-file /tmp/x/proxy.json [--parent-pid 1234]
    python server.py --listen-host 0.0.0.0 --control-port 8474 --route db=15432=postgres:5432 \
        --route app=18000=app:8000=http --token-file /opt/livesandbox-faultproxy/control-token

Modules: this one (routes, the control API, the process), :mod:`link` (a proxied connection
and the toxics' effects), :mod:`sockets` (its two sockets), :mod:`toxics` (what a toxic is),
:mod:`http1` (HTTP/1.1 framing and ``http`` toxics). All five are standard library only and
import each other as siblings, so the folder runs as it is: as a child process, or copied into a
container or pod.

It writes ``{"pid", "control_port"}`` to the state file (when given) once it listens; routes
given with ``--route NAME=PORT=HOST:PORT[=PROTOCOL]`` listen on ``--listen-host`` from the start
(the pod and container forms). The control API listens on ``--control-host`` (loopback unless a
container publishes it). With ``--token-file`` every control request must carry
``Authorization: Bearer <the file's content>``, else it gets ``401 {"error": ...}`` (the docker
proxy: its control port is reachable from the sandbox network). Routes and toxics are managed
over HTTP (``Connection: close``, JSON bodies):

=========================================  ===================================================
``GET  /health``                           ``{"ok": true}``
``GET  /routes``                           every route: listen port, upstream, toxics, links
``PUT  /routes/<name>``                    ``{"upstream": "127.0.0.1:5432", "listen_port": 0,
                                           "protocol": "tcp"|"http"}`` -> the route
                                           (``listen_port`` is the bound port)
``POST /routes/<name>/toxics``             ``{"kind", "direction", "params", "owner",
                                           "owner_pid", "ttl_s", "scope"}`` -> the toxic
``GET  /routes/<name>/toxics/<id>``        one toxic, with its ``hits`` and ``requests_seen``
``DELETE /routes/<name>/toxics/<id>``      remove one toxic -> ``{"removed", "toxic"}``
``DELETE /toxics[?owner=...]``             remove all toxics (of one owner)
=========================================  ===================================================

An ``http`` route parses HTTP/1.1 requests (:mod:`http1`): it strips the
``X-Livesandbox-Test`` header, and a toxic with a ``scope`` acts only on the requests that carried
that value (and on their responses), so one test's faults never reach another test's requests.
Each toxic counts ``hits``: connections it acted on (``tcp`` routes), requests (``http``).

Toxics (ideas from Toxiproxy's, written afresh), applied per direction: ``upstream`` is
client -> server data, ``downstream`` server -> client, ``both`` either:

- ``latency`` ``{"ms", "jitter"}``: each chunk is delivered ``ms +- jitter`` after it arrived;
  chunks keep their order and the stream keeps its throughput (a queue, not a per-chunk sleep).
- ``reset`` ``{"after_bytes"}``: once a link has carried that many bytes, both sides get a TCP RST
  (``SO_LINGER`` 0 then close). With 0, existing links are reset at once and new ones on accept.
- ``timeout`` ``{"after"}``: data is swallowed (a black hole); with ``after`` seconds the link is
  closed that long after the toxic first swallowed data on it.
- ``bandwidth`` ``{"rate_kbps"}``: at most that many kilobits per second (1 kbps = 125 B/s).
- ``slow_close`` ``{"delay"}``: when one side closes, the other side is closed ``delay`` s later.
- ``http`` (``http`` routes): answer (``status``), reset (``abort``) or hold back (``delay``) the
  requests it matches; see :func:`http1.decide`.

A toxic may carry ``owner_pid`` (removed when that process is gone) and ``ttl_s`` (removed when
it expires), so a crashed test process cannot leave a fault behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__:
    from .link import Link
    from .sockets import Side
    from .toxics import Toxic, make_toxic, pid_alive
else:  # run by path under ``python -I -S``: put the siblings on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from link import Link  # type: ignore[no-redef,import-not-found]
    from sockets import Side  # type: ignore[no-redef,import-not-found]
    from toxics import Toxic, make_toxic, pid_alive  # type: ignore[no-redef,import-not-found]

SWEEP_S = 0.25
PROTOCOLS = ("tcp", "http")


class Route:
    """One listening port forwarding to one upstream address."""

    def __init__(self, name: str, upstream: tuple[str, int], protocol: str = "tcp") -> None:
        self.name = name
        self.upstream = upstream
        self.protocol = protocol
        self.requests = 0  # request heads parsed (http)
        self.unparsed = 0  # connections passed through unparsed (http)
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self.server: asyncio.Server | None = None
        self.listen_port = 0
        self.accepted = 0

    def toxics_for(self, direction: str, scope: str = "") -> list[Toxic]:
        """Stream toxics on ``direction`` for traffic of ``scope`` (empty on the fast path)."""
        if not self.toxics:
            return []
        return [
            t
            for t in self.toxics.values()
            if t.kind != "http" and t.applies(direction) and t.scope in ("", scope)
        ]

    def http_toxics(self) -> list[Toxic]:
        """The ``http`` toxics, oldest first."""
        if not self.toxics:
            return []
        return [t for t in self.toxics.values() if t.kind == "http"]

    async def listen(self, port: int, host: str = "127.0.0.1") -> None:
        """Bind host:port (0 = any free port)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, host, port, backlog=256)
        self.listen_port = int(self.server.sockets[0].getsockname()[1])

    def _accept(self) -> Side:
        # The link starts in the client side's connection_made (the transport exists then).
        self.accepted += 1
        link = Link(self)
        self.links.add(link)
        return link.client

    def add(self, toxic: Toxic) -> None:
        """Install a toxic; a reset without a byte budget also resets current links."""
        toxic.unparsed_before = self.unparsed
        self.toxics[toxic.id] = toxic
        if toxic.kind == "reset" and not toxic.params.get("after_bytes", 0):
            for link in list(self.links):
                if toxic.scope in ("", link.scope):
                    link.hit(toxic)
                    link.reset()

    def to_json(self) -> dict[str, Any]:
        """The route as the control API shows it."""
        return {
            "name": self.name,
            "listen_port": self.listen_port,
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "toxics": [t.to_json() for t in self.toxics.values()],
            "links": len(self.links),
            "accepted": self.accepted,
            "protocol": self.protocol,
            "requests": self.requests,
            "unparsed": self.unparsed,
        }


class Proxy:
    """All routes plus the control API."""

    def __init__(self, listen_host: str = "127.0.0.1", token: bytes = b"") -> None:
        self.routes: dict[str, Route] = {}
        self.listen_host = listen_host
        self.token = token  # empty: no Authorization needed (a proxy on loopback only)

    def authorized(self, header: str) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        if not self.token:
            return True
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("latin-1"), self.token)

    def sweep(self) -> None:
        """Drop expired toxics and those whose owner process died."""
        now = time.time()
        for route in self.routes.values():
            for key in [k for k, t in route.toxics.items() if t.stale(now)]:
                del route.toxics[key]

    async def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Route one control request."""
        url = urlsplit(path)
        parts = [p for p in url.path.split("/") if p]
        self.sweep()
        if method == "GET" and parts == ["health"]:
            return 200, {"ok": True, "pid": os.getpid()}
        if method == "GET" and parts == ["routes"]:
            return 200, {name: r.to_json() for name, r in self.routes.items()}
        if method == "PUT" and len(parts) == 2 and parts[0] == "routes":
            return await self._put_route(parts[1], body)
        if method == "DELETE" and parts == ["toxics"]:
            owner = parse_qs(url.query).get("owner", [None])[0]
            removed = 0
            for each in self.routes.values():
                for key in [k for k, t in each.toxics.items() if owner in (None, t.owner)]:
                    del each.toxics[key]
                    removed += 1
            return 200, {"removed": removed}
        if len(parts) >= 3 and parts[0] == "routes" and parts[2] == "toxics":
            route = self.routes.get(parts[1])
            if route is None:
                return 404, {"error": f"no route {parts[1]!r}"}
            if method == "POST" and len(parts) == 3:
                return self._add_toxic(route, body)
            if len(parts) == 4 and method in ("GET", "DELETE"):
                found = route.toxics.get(parts[3])
                if found is None:
                    return 404, {"error": "no such toxic"}
                shown = {**found.to_json(), "unparsed": route.unparsed - found.unparsed_before}
                if method == "GET":
                    return 200, shown
                del route.toxics[parts[3]]
                return 200, {"removed": 1, "toxic": shown}
        return 404, {"error": f"no endpoint {method} {url.path}"}

    async def _put_route(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        host, _, port = str(body.get("upstream", "")).rpartition(":")
        if not host or not port.isdigit():
            return 400, {"error": "upstream must be 'host:port'"}
        protocol = str(body.get("protocol", "tcp"))
        if protocol not in PROTOCOLS:
            return 400, {"error": f"protocol must be one of {PROTOCOLS}"}
        existing = self.routes.get(name)
        if existing is not None:
            existing.upstream = (host, int(port))
            return 200, existing.to_json()
        route = Route(name, (host, int(port)), protocol)
        await route.listen(int(body.get("listen_port", 0)), self.listen_host)
        self.routes[name] = route
        return 200, route.to_json()

    def _add_toxic(self, route: Route, body: dict[str, Any]) -> tuple[int, Any]:
        toxic, problem = make_toxic(body, route.protocol)
        if toxic is None:
            return 400, {"error": f"route {route.name!r}: {problem}"}
        route.add(toxic)
        return 201, toxic.to_json()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one HTTP/1.1 control request and close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length, authorization = 0, ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "authorization":
                    authorization = value
            if self.authorized(authorization):
                raw = await reader.readexactly(length) if length else b""
                body = json.loads(raw) if raw.strip() else {}
                status, payload = await self.handle(method, path, body)
            else:
                status, payload = 401, {"error": "unauthorized: this proxy needs its control token"}
        except (ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            status, payload = 400, {"error": f"bad request: {exc}"}
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def serve(
    state_file: str,
    parent_pid: int,
    listen_host: str = "127.0.0.1",
    control_port: int = 0,
    routes: list[str] | None = None,
    control_host: str = "127.0.0.1",
    ready_port: int = 0,
    token: bytes = b"",
) -> None:
    """Listen for control requests until SIGTERM/SIGINT (or the parent's death).

    ``routes`` (``NAME=LISTEN_PORT=HOST:PORT[=PROTOCOL]``) are opened before the state file is
    written, so a proxy in a pod serves its routes from the start. ``ready_port`` (on
    ``listen_host``) opens last and only accepts and closes: a pod's readiness probe checks it,
    not a route, whose connections go upstream (an app or database still starting would reset
    them and take the proxy out of its Services, which the app needs to reach its database).
    With a ``token`` control requests need ``Authorization: Bearer <token>``.
    """
    proxy = Proxy(listen_host, token)
    for spec in routes or []:
        name, _, rest = spec.partition("=")
        port_text, _, rest = rest.partition("=")
        upstream, _, protocol = rest.partition("=")
        body = {
            "upstream": upstream,
            "listen_port": int(port_text) if port_text.isdigit() else 0,
            "protocol": protocol or "tcp",
        }
        status, payload = await proxy.handle("PUT", f"/routes/{name}", body)
        if status != 200:
            raise SystemExit(
                f"--route {spec!r}: {payload['error']} (want NAME=LISTEN_PORT=HOST:PORT[=tcp|http])"
            )
    # In a pod the control API stays on loopback: reached through the API server's port-forward
    # (which connects to the pod's loopback), never through a Service. A container publishes it
    # on the host's loopback, so it listens on the container's address there, where the
    # sandbox network reaches it too: that one is started with --token-file.
    server = await asyncio.start_server(proxy.control, control_host, control_port)
    port = int(server.sockets[0].getsockname()[1])
    if state_file:
        tmp = state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "control_port": port}, handle)
        os.replace(tmp, state_file)
    ready = None
    if ready_port:
        ready = await asyncio.start_server(_accept_and_close, listen_host, ready_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_S)
        proxy.sweep()
        if parent_pid and not pid_alive(parent_pid):
            break
    server.close()
    if ready is not None:
        ready.close()
    for route in proxy.routes.values():
        if route.server is not None:
            route.server.close()
        for link in list(route.links):
            link.close()


async def _accept_and_close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-file", default="", help="where to write pid and control port")
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this pid is gone")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address routes bind")
    parser.add_argument("--control-port", type=int, default=0, help="control API port")
    parser.add_argument("--control-host", default="127.0.0.1", help="address the control API binds")
    parser.add_argument("--ready-port", type=int, default=0, help="readiness port (accept, close)")
    parser.add_argument("--token-file", default="", help="control requests need this token")
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        help="NAME=LISTEN_PORT=HOST:PORT[=tcp|http], repeatable",
    )
    args = parser.parse_args(argv)
    token = read_token(args.token_file) if args.token_file else b""
    asyncio.run(
        serve(
            args.state_file,
            args.parent_pid,
            args.listen_host,
            args.control_port,
            args.route,
            args.control_host,
            args.ready_port,
            token,
        )
    )
    return 0


def read_token(path: str) -> bytes:
    """The control token in ``path`` (surrounding whitespace dropped); never printed."""
    try:
        with open(path, "rb") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise SystemExit(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    if not token:
        raise SystemExit(f"--token-file {path}: the file is empty (want the control token)")
    return token


if __name__ == "__main__":
    sys.exit(main())

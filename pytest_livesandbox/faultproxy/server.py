"""A small asyncio TCP fault proxy with a JSON control API on loopback.

Standard library only, and runnable by path, so it starts in tens of milliseconds next to
PostgreSQL::

    python proxy.py --state-file /tmp/x/proxy.json [--parent-pid 1234]
    python proxy.py --listen-host 0.0.0.0 --control-port 8474 --route db=15432=postgres:5432

It writes ``{"pid", "control_port"}`` to the state file (when given) once it listens; routes
given with ``--route`` listen on ``--listen-host`` from the start (the pod form on kube and
docker). Routes and toxics are managed over HTTP (``Connection: close``, JSON bodies):

=========================================  ===================================================
``GET  /health``                           ``{"ok": true}``
``GET  /routes``                           every route: listen port, upstream, toxics, links
``PUT  /routes/<name>``                    ``{"upstream": "127.0.0.1:5432", "listen_port": 0}``
                                           -> the route (``listen_port`` is the bound port)
``POST /routes/<name>/toxics``             ``{"kind", "direction", "params", "owner",
                                           "owner_pid", "ttl_s"}`` -> the toxic with its id
``DELETE /routes/<name>/toxics/<id>``      remove one toxic
``DELETE /toxics[?owner=...]``             remove all toxics (of one owner)
=========================================  ===================================================

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

A toxic may carry ``owner_pid`` (removed when that process is gone) and ``ttl_s`` (removed when
it expires), so a crashed test process cannot leave a fault behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

BUFFER = 1024 * 1024  # stream and transport buffers: fewer, bigger reads and writes
QUEUE_CHUNKS = 64
SWEEP_S = 0.25
KINDS = ("latency", "reset", "timeout", "bandwidth", "slow_close")
DIRECTIONS = ("both", "upstream", "downstream")
_ids = itertools.count(1)


@dataclass
class Toxic:
    """One fault on a route."""

    kind: str
    direction: str
    params: dict[str, float]
    owner: str = ""
    owner_pid: int = 0
    expires_at: float = 0.0
    id: str = field(default_factory=lambda: f"t{next(_ids)}")
    created_at: float = field(default_factory=time.time)

    def applies(self, direction: str) -> bool:
        """True if the toxic acts on data flowing in ``direction``."""
        return self.direction in ("both", direction)

    def stale(self, now: float) -> bool:
        """Expired, or its owning process is gone."""
        if self.expires_at and now >= self.expires_at:
            return True
        return bool(self.owner_pid) and not _pid_alive(self.owner_pid)

    def to_json(self) -> dict[str, Any]:
        """The toxic as the control API shows it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "direction": self.direction,
            "params": self.params,
            "owner": self.owner,
            "owner_pid": self.owner_pid,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST instead of a FIN: linger on, timeout 0."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * BUFFER)
    transport.set_write_buffer_limits(high=BUFFER)  # type: ignore[attr-defined]
    # asyncio reads at most 256 KiB per recv(); bigger reads halve the calls on bulk streams.
    if hasattr(transport, "max_size"):
        transport.max_size = BUFFER


class Side(asyncio.Protocol):
    """One socket of a link; data it receives flows in ``direction``.

    Protocols rather than streams: a chunk goes from ``data_received`` straight to the other
    socket's transport, with no reader buffer in between (that doubled throughput).
    """

    def __init__(self, link: Link, direction: str) -> None:
        self.link = link
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Tune the socket."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _tune(transport)
        if self is self.link.client:
            self.link.on_accepted()

    def data_received(self, data: bytes) -> None:
        """Hand the chunk to the link."""
        self.link.on_data(self.direction, data)

    def eof_received(self) -> bool:
        """Half-close: pass the FIN on, keep the other way open."""
        self.link.on_eof(self.direction)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Either side gone: the link is over."""
        self.link.on_lost()

    def pause_writing(self) -> None:
        """Our send buffer is full: stop reading the socket that feeds it."""
        self.writable.clear()
        feeder = self.link.feeder(self)
        if feeder is not None and feeder.transport is not None:
            feeder.transport.pause_reading()

    def resume_writing(self) -> None:
        """Drained: read again."""
        self.writable.set()
        feeder = self.link.feeder(self)
        if feeder is not None and feeder.transport is not None:
            with contextlib.suppress(RuntimeError):
                feeder.transport.resume_reading()


class Link:
    """One proxied connection: client <-> upstream.

    Without toxics (and nothing queued) a chunk is written through at once. Otherwise it goes
    into the direction's queue with a due time, and a sender task writes it when due (latency,
    bandwidth, slow_close), keeping the order.
    """

    def __init__(self, route: Route) -> None:
        self.route = route
        self.client = Side(self, "upstream")
        self.upstream = Side(self, "downstream")
        self.bytes = 0
        self.black_holed_at = 0.0
        self.closed = False
        self.eofs: set[str] = set()
        self.queues: dict[str, asyncio.Queue[tuple[float, bytes | None]]] = {}
        self.senders: list[asyncio.Task[None]] = []
        self.last_due = {"upstream": 0.0, "downstream": 0.0}
        self.busy: set[str] = set()  # directions whose sender holds a chunk right now
        # Client data read before the upstream connection exists. Python < 3.11.3 (Debian 12's
        # 3.11.2) starts reading a new transport even when connection_made paused it
        # (_SelectorTransport._add_reader ignored the pause), so such data can arrive.
        self.early: list[bytes] = []

    def target(self, direction: str) -> Side:
        """The side that data flowing in ``direction`` is written to."""
        return self.upstream if direction == "upstream" else self.client

    def feeder(self, side: Side) -> Side | None:
        """The side whose data is written to ``side``."""
        return self.client if side is self.upstream else self.upstream

    def on_accepted(self) -> None:
        """The client is connected: reset it at once, or connect upstream."""
        for toxic in self.route.toxics_for("upstream") + self.route.toxics_for("downstream"):
            if toxic.kind == "reset" and not toxic.params.get("after_bytes", 0):
                self.reset()
                return
        assert self.client.transport is not None
        self.client.transport.pause_reading()  # until the upstream connection is there
        self.senders.append(asyncio.ensure_future(self.connect(*self.route.upstream)))

    async def connect(self, host: str, port: int) -> None:
        """Open the upstream connection, then start reading the client."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.upstream, host, port)
        except OSError:
            # Upstream down (evicted app, stopped DB): the client sees the same thing.
            self.reset()
            return
        if self.closed:
            _rst(self.upstream.transport)
        elif self.client.transport is not None:
            early, self.early = self.early, []
            for data in early:
                self.on_data("upstream", data)
            self.client.transport.resume_reading()

    def on_data(self, direction: str, data: bytes) -> None:
        """A chunk arrived: forward it now, queue it, or apply a fatal toxic."""
        if self.closed:
            return
        if direction == "upstream" and self.upstream.transport is None:
            self.early.append(data)  # see __init__; sent once the upstream is connected
            return
        self.bytes += len(data)
        toxics = self.route.toxics_for(direction)
        queue = self.queues.get(direction)
        if not toxics and (queue is None or queue.empty()) and direction not in self.busy:
            transport = self.target(direction).transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
            return
        now = time.monotonic()
        if toxics and self._fatal(toxics, now):
            return
        due = now
        for toxic in toxics:
            if toxic.kind == "latency":
                jitter = toxic.params.get("jitter", 0.0)
                due += max(0.0, toxic.params["ms"] + random.uniform(-jitter, jitter)) / 1000
        # Jitter must not reorder a byte stream.
        due = max(due, self.last_due[direction])
        self.last_due[direction] = due
        self._queue(direction).put_nowait((due, data))
        source = self.feeder(self.target(direction))
        if self._queue(direction).qsize() > QUEUE_CHUNKS and source and source.transport:
            source.transport.pause_reading()  # resumed by the sender once it catches up

    def _queue(self, direction: str) -> asyncio.Queue[tuple[float, bytes | None]]:
        queue = self.queues.get(direction)
        if queue is None:
            queue = self.queues[direction] = asyncio.Queue()
            self.senders.append(asyncio.ensure_future(self._send(direction, queue)))
        return queue

    def on_eof(self, direction: str) -> None:
        """The sender of ``direction`` half-closed: pass it on after any queued data."""
        queue = self.queues.get(direction)
        slow = any(t.kind == "slow_close" for t in self.route.toxics_for(direction))
        if slow or (queue is not None and (not queue.empty() or direction in self.busy)):
            self._queue(direction).put_nowait((0.0, None))
        else:
            self._finish(direction)

    def _finish(self, direction: str) -> None:
        self.eofs.add(direction)
        transport = self.target(direction).transport
        if transport is not None and not transport.is_closing():
            if transport.can_write_eof():
                transport.write_eof()
        if len(self.eofs) == 2:
            self.close()

    def on_lost(self) -> None:
        """One socket closed: close the other (a reset stays a reset)."""
        self.close()

    def _fatal(self, toxics: list[Toxic], now: float) -> bool:
        for toxic in toxics:
            if toxic.kind == "reset" and self.bytes >= toxic.params.get("after_bytes", 0):
                self.reset()
                return True
            if toxic.kind == "timeout":
                if not self.black_holed_at:
                    self.black_holed_at = now
                    after = toxic.params.get("after", 0.0)
                    if after:
                        asyncio.get_running_loop().call_later(after, self.close)
                return True
        return False

    async def _send(self, direction: str, queue: asyncio.Queue[tuple[float, bytes | None]]) -> None:
        side = self.target(direction)
        try:
            while True:
                due, data = await queue.get()
                self.busy.add(direction)
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    for toxic in self.route.toxics_for(direction):
                        if toxic.kind == "slow_close":
                            await asyncio.sleep(toxic.params.get("delay", 0.0))
                    self.busy.discard(direction)
                    self._finish(direction)
                    return
                await self._write(direction, data, side)
                self.busy.discard(direction)
                source = self.feeder(side)
                if queue.qsize() <= QUEUE_CHUNKS // 2 and source and source.transport:
                    with contextlib.suppress(RuntimeError):
                        source.transport.resume_reading()
        except (ConnectionError, OSError):
            self.close()

    async def _write(self, direction: str, data: bytes, side: Side) -> None:
        rate = 0.0
        for toxic in self.route.toxics_for(direction):
            if toxic.kind == "bandwidth":
                rate = toxic.params["rate_kbps"] * 125  # bytes per second
        step = max(1, int(rate / 20)) if rate else len(data)
        # Slices of ~50 ms keep a limited rate smooth for small and large chunks alike.
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            await side.writable.wait()
            if side.transport is None or side.transport.is_closing():
                return
            side.transport.write(piece)
            if rate:
                await asyncio.sleep(len(piece) / rate)

    def reset(self) -> None:
        """Abort both sides with RST."""
        if self.closed:
            return
        self.closed = True
        _rst(self.client.transport)
        _rst(self.upstream.transport)
        self._stop_senders()
        self.route.links.discard(self)

    def close(self) -> None:
        """Close both sides normally (after what is already in their buffers)."""
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.close()
        self._stop_senders()
        self.route.links.discard(self)

    def _stop_senders(self) -> None:
        current = asyncio.current_task()
        for task in self.senders:
            if task is not current:
                task.cancel()


class Route:
    """One listening port forwarding to one upstream address."""

    def __init__(self, name: str, upstream: tuple[str, int]) -> None:
        self.name = name
        self.upstream = upstream
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self.server: asyncio.Server | None = None
        self.listen_port = 0
        self.accepted = 0

    def toxics_for(self, direction: str) -> list[Toxic]:
        """Toxics acting on ``direction`` (an empty list on the fast path)."""
        if not self.toxics:
            return []
        return [t for t in self.toxics.values() if t.applies(direction)]

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
        self.toxics[toxic.id] = toxic
        if toxic.kind == "reset" and not toxic.params.get("after_bytes", 0):
            for link in list(self.links):
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
        }


class Proxy:
    """All routes plus the control API."""

    def __init__(self, listen_host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.listen_host = listen_host

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
            if method == "DELETE" and len(parts) == 4:
                found = route.toxics.pop(parts[3], None)
                return (200, {"removed": 1}) if found else (404, {"error": "no such toxic"})
        return 404, {"error": f"no endpoint {method} {url.path}"}

    async def _put_route(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        host, _, port = str(body.get("upstream", "")).rpartition(":")
        if not host or not port.isdigit():
            return 400, {"error": "upstream must be 'host:port'"}
        existing = self.routes.get(name)
        if existing is not None:
            existing.upstream = (host, int(port))
            return 200, existing.to_json()
        route = Route(name, (host, int(port)))
        await route.listen(int(body.get("listen_port", 0)), self.listen_host)
        self.routes[name] = route
        return 200, route.to_json()

    def _add_toxic(self, route: Route, body: dict[str, Any]) -> tuple[int, Any]:
        kind, direction = body.get("kind"), body.get("direction", "both")
        if kind not in KINDS or direction not in DIRECTIONS:
            return 400, {"error": f"kind must be one of {KINDS}, direction one of {DIRECTIONS}"}
        params = {str(k): float(v) for k, v in dict(body.get("params") or {}).items()}
        if kind == "latency" and "ms" not in params:
            return 400, {"error": "latency needs params.ms"}
        if kind == "bandwidth" and params.get("rate_kbps", 0) <= 0:
            return 400, {"error": "bandwidth needs params.rate_kbps > 0"}
        ttl = float(body.get("ttl_s") or 0)
        toxic = Toxic(
            kind=str(kind),
            direction=str(direction),
            params=params,
            owner=str(body.get("owner", "")),
            owner_pid=int(body.get("owner_pid") or 0),
            expires_at=time.time() + ttl if ttl else 0.0,
        )
        route.add(toxic)
        return 201, toxic.to_json()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one HTTP/1.1 control request and close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            status, payload = await self.handle(method, path, body)
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
) -> None:
    """Listen for control requests until SIGTERM/SIGINT (or the parent's death).

    ``routes`` (``NAME=LISTEN_PORT=HOST:PORT``) are opened before the state file is written, so a
    proxy in a pod serves its routes from the start (its readiness probe checks their ports).
    """
    proxy = Proxy(listen_host)
    for spec in routes or []:
        name, _, rest = spec.partition("=")
        port_text, _, upstream = rest.partition("=")
        status, payload = await proxy.handle(
            "PUT", f"/routes/{name}", {"upstream": upstream, "listen_port": int(port_text or 0)}
        )
        if status != 200:
            raise SystemExit(
                f"--route {spec!r}: {payload['error']} (want NAME=LISTEN_PORT=HOST:PORT)"
            )
    # The control API stays on loopback: in a pod it is reached through the API server's
    # port-forward (which connects to the pod's loopback), never through a Service.
    server = await asyncio.start_server(proxy.control, "127.0.0.1", control_port)
    port = int(server.sockets[0].getsockname()[1])
    if state_file:
        tmp = state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "control_port": port}, handle)
        os.replace(tmp, state_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_S)
        proxy.sweep()
        if parent_pid and not _pid_alive(parent_pid):
            break
    server.close()
    for route in proxy.routes.values():
        if route.server is not None:
            route.server.close()
        for link in list(route.links):
            link.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-file", default="", help="where to write pid and control port")
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this pid is gone")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address routes bind")
    parser.add_argument("--control-port", type=int, default=0, help="control API port (loopback)")
    parser.add_argument(
        "--route", action="append", default=[], help="NAME=LISTEN_PORT=HOST:PORT, repeatable"
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve(args.state_file, args.parent_pid, args.listen_host, args.control_port, args.route)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

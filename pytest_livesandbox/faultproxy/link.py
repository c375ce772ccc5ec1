"""One proxied connection: the two sockets, the toxics' effects on them, the HTTP layer.

A :class:`Link` is made by its route for each accepted client; without toxics a chunk goes from
one socket's ``data_received`` straight to the other's transport. Standard library only::

    link = Link(route)            # in the route's protocol factory
    return link.client            # the asyncio.Protocol of the accepted socket
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING

if __package__:
    from . import http1
    from .sockets import BUFFER, Side, rst
else:  # run by path (``python -I -S server.py``): the siblings are top-level modules
    import http1  # type: ignore[no-redef,import-not-found]
    from sockets import BUFFER, Side, rst  # type: ignore[no-redef,import-not-found]

if TYPE_CHECKING:
    from .server import Route
    from .toxics import Toxic

QUEUE_CHUNKS = 64


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
        # What the client sent before the upstream connection was there (None marks its EOF),
        # and whether it has been replayed: until then, later client bytes queue behind it.
        self.early: list[bytes | None] = []
        self.replayed = False
        self.http = http1.RequestStream() if route.protocol == "http" else None
        self.scope = ""  # of the request in flight (http routes)
        self.fault: Toxic | None = None  # the http toxic acting on the request in flight
        self.request: http1.Request | None = None
        self.answered = False  # answered by an http toxic and closing
        self.counted: set[str] = set()  # toxics that counted this connection / request

    def toxics(self, direction: str) -> list[Toxic]:
        """The route's stream toxics that act on this link in ``direction``."""
        return self.route.toxics_for(direction, self.scope)

    def hit(self, toxic: Toxic) -> None:
        """Count the toxic once per connection (tcp) or request (http)."""
        if toxic.id not in self.counted:
            self.counted.add(toxic.id)
            toxic.hits += 1

    def target(self, direction: str) -> Side:
        """The side that data flowing in ``direction`` is written to."""
        return self.upstream if direction == "upstream" else self.client

    def feeder(self, side: Side) -> Side | None:
        """The side whose data is written to ``side``."""
        return self.client if side is self.upstream else self.upstream

    def on_accepted(self) -> None:
        """The client is connected: reset it at once, or connect upstream."""
        for toxic in self.toxics("upstream") + self.toxics("downstream"):
            if toxic.kind == "reset" and not toxic.params.get("after_bytes", 0):
                self.hit(toxic)
                self.reset()
                return
        assert self.client.transport is not None
        # Until the upstream is there. CPython 3.11 before the gh-103607 fix (Debian 12's 3.11.2)
        # undoes this pause; on_data() then holds the early data instead of dropping it.
        self.client.transport.pause_reading()
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
            rst(self.upstream.transport)
            return
        # The upstream side's connection_made ran before this await returned, and client bytes
        # may have arrived in between: everything held is replayed first, in order, through the
        # toxics, as if it had arrived just now (no await here, so nothing can overtake it).
        self.replayed = True
        early, self.early = self.early, []
        for chunk in early:
            if chunk is None:
                self.on_eof("upstream")
            else:
                self.on_data("upstream", chunk)
        if self.client.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.client.transport.resume_reading()

    def on_data(self, direction: str, data: bytes) -> None:
        """A chunk arrived: split it into requests (http routes) or deliver it."""
        if self.closed:
            return
        if direction == "upstream" and not self.replayed:
            self._hold_early(data)
            return
        if self.http is not None and direction == "upstream":
            self.on_requests(self.http, data)
        else:
            self.deliver(direction, data)

    def on_requests(self, stream: http1.RequestStream, data: bytes) -> None:
        """Client bytes of an http route: scope, match and fault each request."""
        if self.answered:
            return
        for piece in stream.feed(data):
            if self.closed:
                return
            if piece.kind == "raw":
                if stream.unparsed and "unparsed" not in self.counted:
                    self.counted.add("unparsed")
                    self.route.unparsed += 1
                self.deliver("upstream", piece.data)
                continue
            if piece.request is not None:  # a head: a new exchange begins
                self.route.requests += 1
                if piece.request.scope != self.scope:
                    self.scope, self.bytes = piece.request.scope, 0
                self.counted.clear()
                self.fault = http1.decide(self.route.http_toxics(), piece.request)
                self.request = piece.request
            fault, request = self.fault, self.request
            if fault is None or fault.params["action"] == "delay":
                if piece.data:
                    extra = float(fault.params["delay"]) if fault is not None else 0.0
                    self.deliver("upstream", piece.data, extra)
            elif piece.kind == "end" or (piece.request is not None and piece.request.expect):
                # Status / abort once the whole request is in; at once when the client waits
                # for "100 Continue" before its body (then the connection closes after it).
                assert request is not None
                if fault.params["action"] == "abort":
                    self.reset()
                    return
                if request.expect:
                    request.close = True
                self.deliver("downstream", http1.response(fault.params, request))
                if request.close:
                    self.on_eof("downstream")
                    self.answered = True  # whatever else the client sends is dropped
                    return
            if piece.kind == "end":
                self.fault = None

    def deliver(self, direction: str, data: bytes, extra: float = 0.0) -> None:
        """Forward a chunk now, queue it (due ``extra`` s later or more), or apply a fatal toxic."""
        self.bytes += len(data)
        toxics = self.toxics(direction)
        queue = self.queues.get(direction)
        if (
            not toxics
            and not extra
            and (queue is None or queue.empty())
            and direction not in self.busy
        ):
            transport = self.target(direction).transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
            return
        now = time.monotonic()
        if toxics and self._fatal(toxics, now):
            return
        due = now + extra
        for toxic in toxics:
            if toxic.kind == "latency":
                self.hit(toxic)
                jitter = toxic.params.get("jitter", 0.0)
                due += max(0.0, toxic.params["ms"] + random.uniform(-jitter, jitter)) / 1000
        # Jitter must not reorder a byte stream.
        due = max(due, self.last_due[direction])
        self.last_due[direction] = due
        self._queue(direction).put_nowait((due, data))
        source = self.feeder(self.target(direction))
        if self._queue(direction).qsize() > QUEUE_CHUNKS and source and source.transport:
            source.transport.pause_reading()  # resumed by the sender once it catches up

    def _hold_early(self, data: bytes | None) -> None:
        """Keep client data (or its EOF) that came before the upstream connection."""
        self.early.append(data)
        held = sum(len(chunk) for chunk in self.early if chunk)
        transport = self.client.transport
        if held > BUFFER and transport is not None:
            # Bound the memory where the pause was undone (the transport believes it is paused).
            transport.resume_reading()
            transport.pause_reading()

    def _queue(self, direction: str) -> asyncio.Queue[tuple[float, bytes | None]]:
        queue = self.queues.get(direction)
        if queue is None:
            queue = self.queues[direction] = asyncio.Queue()
            self.senders.append(asyncio.ensure_future(self._send(direction, queue)))
        return queue

    def on_eof(self, direction: str) -> None:
        """The sender of ``direction`` half-closed: pass it on after any queued data."""
        if direction == "upstream" and not self.replayed:
            self._hold_early(None)
            return
        queue = self.queues.get(direction)
        slow = any(t.kind == "slow_close" for t in self.toxics(direction))
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
                self.hit(toxic)
                self.reset()
                return True
            if toxic.kind == "timeout":
                self.hit(toxic)
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
                    for toxic in self.toxics(direction):
                        if toxic.kind == "slow_close":
                            self.hit(toxic)
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
        for toxic in self.toxics(direction):
            if toxic.kind == "bandwidth":
                self.hit(toxic)
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
        rst(self.client.transport)
        rst(self.upstream.transport)
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

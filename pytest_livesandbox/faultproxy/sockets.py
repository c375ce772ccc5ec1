"""The two sockets of a proxied connection: their asyncio protocol and how they are tuned.

Standard library only (part of the proxy's folder, which runs by path)::

    side = Side(link, "upstream")   # data it receives flows client -> server
    rst(side.transport)             # close with a TCP RST
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .link import Link

BUFFER = 1024 * 1024  # stream and transport buffers: fewer, bigger reads and writes


def rst(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST instead of a FIN: linger on, timeout 0."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def tune(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY, big send buffers, 1 MiB reads."""
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
        tune(transport)
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

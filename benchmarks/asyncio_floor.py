#!/usr/bin/env python3
"""The least a stdlib asyncio TCP forwarder can do: the floor under our fault proxy's overhead.

    python benchmarks/asyncio_floor.py UPSTREAM_PORT     # prints its listening port

No toxics, no control API, no HTTP parsing: ``data_received`` writes straight to the other
socket. ``benchmarks/fault_proxy.py`` measures it next to our proxy and Toxiproxy, so the gap
between ours and Toxiproxy can be split into what asyncio costs and what our code adds.
"""

from __future__ import annotations

import asyncio
import socket
import sys


class Forward(asyncio.Protocol):
    """One side of a forwarded connection."""

    def __init__(self, upstream_port: int, peer: Forward | None = None) -> None:
        self.upstream_port = upstream_port
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accepted (or connected upstream): set TCP_NODELAY, connect the other side."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.peer is None:
            transport.pause_reading()
            self.connecting = asyncio.ensure_future(self._connect())
        else:
            self.peer.peer = self
            assert self.peer.transport is not None
            self.peer.transport.resume_reading()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            lambda: Forward(self.upstream_port, self), "127.0.0.1", self.upstream_port
        )

    def data_received(self, data: bytes) -> None:
        """Straight through."""
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Either side gone: close the other."""
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main(upstream_port: int) -> None:
    """Listen on a free loopback port, print it, forward until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Forward(upstream_port), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""The fault proxy as a real process between real sockets: each toxic's effect, measured.

Timing tolerances: the proxy's delay comes from asyncio timers (about 1 ms resolution) on a
shared 2-core machine, so an injected delay must be met (never early) and overshoot by at most
25 ms; bandwidth is checked within -20%/+60% of the ideal transfer time.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_livesandbox.backends.local.launcher import start_proxy
from pytest_livesandbox.faultproxy.client import ProxyClient

OVERSHOOT_S = 0.025


class Upstream:
    """A threaded TCP server running ``handler(conn)`` per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def say_bye(conn: socket.socket) -> None:
    conn.sendall(b"bye")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyClient]:
    workdir = tmp_path_factory.mktemp("proxy")
    process = start_proxy(Path(workdir), parent_pid=0)
    try:
        yield process.wait(timeout=10)
    finally:
        process.process.terminate()
        process.process.wait(5)


@pytest.fixture(scope="module")
def echo_port(proxy: ProxyClient) -> Iterator[int]:
    upstream = Upstream(echo)
    yield proxy.set_route("echo", f"127.0.0.1:{upstream.port}")
    upstream.close()


@pytest.fixture(autouse=True)
def _clean(proxy: ProxyClient) -> Iterator[None]:
    yield
    proxy.clear()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    began = time.perf_counter()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += sock.recv(65536)
    assert got == payload
    return time.perf_counter() - began


def test_passes_data_unchanged_without_toxics(proxy: ProxyClient, echo_port: int) -> None:
    with connect(echo_port) as sock:
        assert round_trip(sock, b"x" * 200_000) < 1.0
        assert round_trip(sock) < 0.05


@pytest.mark.parametrize(
    ("direction", "ms", "expected"), [("downstream", 100, 0.1), ("both", 50, 0.1)]
)
def test_latency_adds_the_delay_per_direction(
    proxy: ProxyClient, echo_port: int, direction: str, ms: float, expected: float
) -> None:
    with connect(echo_port) as sock:
        base = min(round_trip(sock) for _ in range(3))
        proxy.add_toxic("echo", "latency", direction, {"ms": ms})
        added = [round_trip(sock) - base for _ in range(3)]
    assert all(expected - 0.002 <= a <= expected + OVERSHOOT_S for a in added), added


def test_jitter_never_reorders_the_stream(proxy: ProxyClient, echo_port: int) -> None:
    proxy.add_toxic("echo", "latency", "upstream", {"ms": 20, "jitter": 20})
    payload = b"".join(b"%05d" % i for i in range(200))
    with connect(echo_port) as sock:
        for i in range(200):
            sock.sendall(b"%05d" % i)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
    assert got == payload


def test_reset_gives_the_client_a_connection_reset(proxy: ProxyClient, echo_port: int) -> None:
    with connect(echo_port) as idle:
        round_trip(idle)
        proxy.add_toxic("echo", "reset", "both", {})
        with pytest.raises(ConnectionResetError):
            round_trip(idle)  # an open link is reset too
    with pytest.raises(ConnectionResetError):  # at connect or at the first read
        with connect(echo_port) as sock:
            round_trip(sock)


def test_reset_after_bytes_lets_the_budget_through(proxy: ProxyClient, echo_port: int) -> None:
    proxy.add_toxic("echo", "reset", "upstream", {"after_bytes": 10})
    with connect(echo_port) as sock:
        round_trip(sock, b"12345")
        with pytest.raises(ConnectionResetError):
            round_trip(sock, b"678901234567")
            round_trip(sock, b"more")


def test_timeout_black_holes_then_closes(proxy: ProxyClient, echo_port: int) -> None:
    proxy.add_toxic("echo", "timeout", "both", {})
    with connect(echo_port, timeout=0.3) as sock, pytest.raises(TimeoutError):
        round_trip(sock)
    proxy.clear()
    proxy.add_toxic("echo", "timeout", "both", {"after": 0.2})
    with connect(echo_port, timeout=3) as sock:
        began = time.perf_counter()
        sock.sendall(b"lost")
        assert sock.recv(10) == b""  # closed by the proxy
        assert 0.2 <= time.perf_counter() - began < 0.2 + OVERSHOOT_S * 4


def test_bandwidth_limits_the_rate(proxy: ProxyClient, echo_port: int) -> None:
    proxy.add_toxic("echo", "bandwidth", "downstream", {"rate_kbps": 160})  # 20 000 B/s
    with connect(echo_port) as sock:
        took = round_trip(sock, b"b" * 20_000)
    assert 0.8 <= took <= 1.6, took


def test_slow_close_delays_the_fin(proxy: ProxyClient) -> None:
    upstream = Upstream(say_bye)
    port = proxy.set_route("bye", f"127.0.0.1:{upstream.port}")
    try:
        proxy.add_toxic("bye", "slow_close", "downstream", {"delay": 0.3})
        with connect(port) as sock:
            began = time.perf_counter()
            assert sock.recv(10) == b"bye"
            assert sock.recv(10) == b""
            assert 0.3 <= time.perf_counter() - began < 0.3 + OVERSHOOT_S * 4
    finally:
        upstream.close()


def test_faults_of_a_dead_owner_or_past_their_ttl_are_dropped(
    proxy: ProxyClient, echo_port: int
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    proxy.add_toxic("echo", "latency", "both", {"ms": 500}, owner_pid=int(gone.stdout))
    proxy.add_toxic("echo", "latency", "both", {"ms": 500}, ttl_s=0.2)
    alive = proxy.add_toxic("echo", "latency", "both", {"ms": 1})
    time.sleep(0.6)
    assert [t["id"] for t in proxy.toxics()] == [alive["id"]]


def test_upstream_down_resets_the_client(proxy: ProxyClient) -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    dead_port = spare.getsockname()[1]
    spare.close()
    port = proxy.set_route("dead", f"127.0.0.1:{dead_port}")
    with pytest.raises(ConnectionResetError):
        with connect(port) as sock:
            round_trip(sock)

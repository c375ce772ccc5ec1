"""The fault proxy under every Python on the machine (scripts/pythons.py says which).

Regression for Debian 12's /usr/bin/python3 (3.11.2): there ``pause_reading()`` called from
``connection_made()`` is undone by asyncio (CPython gh-103607), so bytes a client sends before
the proxy's upstream connection is up reached ``data_received()`` with nowhere to go and were
dropped: PostgreSQL never saw the app's startup packet. Clients here speak first, like
PostgreSQL's, at once after connecting. With CI=true a missing interpreter fails the test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from pytest_livesandbox.faultproxy import SERVER_SCRIPT as PROXY_SCRIPT
from pytest_livesandbox.faultproxy.client import ProxyClient

from .test_chaos_proxy import Upstream, echo

REPO = Path(__file__).resolve().parents[2]


def _pythons_module() -> ModuleType:
    name = "livesandbox_scripts_pythons"
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "pythons.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYTHONS = _pythons_module()


@pytest.fixture(params=[label for label, _ in PYTHONS.expected()])
def python(request: pytest.FixtureRequest) -> str:
    path = dict(PYTHONS.expected())[request.param]
    if not path:
        reason = f"no {request.param} interpreter here (see scripts/pythons.py)"
        if PYTHONS.in_ci():
            pytest.fail(f"{reason}; CI=true: every expected Python must be tested", False)
        pytest.skip(reason)
    return str(path)


@pytest.fixture
def proxy_under(python: str, tmp_path: Path) -> Iterator[ProxyClient]:
    state = tmp_path / "proxy.json"
    command = [python, "-I", "-S", str(PROXY_SCRIPT), "--state-file", str(state)]
    with open(tmp_path / "proxy.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "--parent-pid", str(os.getpid())],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not state.exists():
            assert process.poll() is None, (tmp_path / "proxy.log").read_text()
            assert time.monotonic() < deadline, "the proxy did not start in 10 s"
            time.sleep(0.01)
        yield ProxyClient(int(json.loads(state.read_text())["control_port"]))
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
def echo_port(proxy_under: ProxyClient) -> Iterator[int]:
    upstream = Upstream(echo)
    yield proxy_under.set_route("echo", f"127.0.0.1:{upstream.port}")
    upstream.close()


def _speak_first(port: int, index: int) -> str:
    """Send at once after connecting, then check every echo; "ok" or what went wrong."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for n in range(5):
            message = b"%d.%d " % (index, n) * (1 + 400 * n)
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(65536)
                if not chunk:
                    return f"closed after {len(got)} of {len(message)} bytes"
                got += chunk
            if got != message:
                return "bytes changed"
    return "ok"


def test_clients_that_speak_first_are_all_answered(echo_port: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _speak_first(echo_port, i), range(32)))
    assert results == ["ok"] * 32


def test_data_and_fin_sent_before_upstream_is_up_arrive_in_order(echo_port: int) -> None:
    with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as sock:
        sock.sendall(b"first-")
        sock.sendall(b"second")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert got == b"first-second"


def test_early_data_goes_through_the_toxics(proxy_under: ProxyClient, echo_port: int) -> None:
    proxy_under.add_toxic("echo", "latency", "upstream", {"ms": 200})
    with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as sock:
        began = time.perf_counter()
        sock.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += sock.recv(16)
        took = time.perf_counter() - began
    assert got == b"hello"
    assert took >= 0.2


def test_a_client_faster_than_the_upstream_connect_is_held_not_lost(
    proxy_under: ProxyClient,
) -> None:
    # The upstream's accept queue is full, so the proxy's connect waits for a SYN retry
    # (about 1 s) while the client pushes megabytes: all must arrive, in order.
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(upstream.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    port = proxy_under.set_route("slow", "{}:{}".format(*upstream.getsockname()))
    payload = bytes(range(256)) * 8192  # 2 MiB
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    sender = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(1)))
    try:
        sender.start()
        time.sleep(0.3)
        peers = {f.getsockname() for f in fillers}
        for filler in fillers:
            filler.close()
        upstream.settimeout(10)
        while True:
            conn, address = upstream.accept()
            if address not in peers:
                break
            conn.close()
        got = bytearray()
        with conn:
            conn.settimeout(10)
            while chunk := conn.recv(1 << 20):
                got += chunk
        assert len(got) == len(payload)
        assert bytes(got) == payload
    finally:
        sender.join(10)
        client.close()
        upstream.close()


def _http_upstream() -> tuple[socket.socket, threading.Thread]:
    """An HTTP server that reads one request with its whole body and says how many bytes came."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                text = b"got %d" % len(body)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(text), text)
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_a_request_dribbled_in_while_the_upstream_connects_keeps_its_order(
    proxy_under: ProxyClient,
) -> None:
    # Seen on kube (Debian's 3.11.2 in the proxy pod): client bytes that arrived between the
    # upstream's connection_made and the replay of the held ones overtook them, so an http
    # route's parser saw body before head and the request never reached the app.
    server, thread = _http_upstream()
    upstream = f"127.0.0.1:{server.getsockname()[1]}"
    port = proxy_under.set_route("web", upstream, protocol="http")
    proxy_under.add_toxic("web", "bandwidth", "upstream", {"rate_kbps": 800}, scope="tok")
    body = b"x" * 20_000
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(
                b"POST /items HTTP/1.1\r\nHost: x\r\nX-Livesandbox-Test: tok\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            for start in range(0, len(body), 100):
                sock.sendall(body[start : start + 100])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.endswith(b"got 20000"), answer[-200:]
    finally:
        server.close()
        thread.join(5)

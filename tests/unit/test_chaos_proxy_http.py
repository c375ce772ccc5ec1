"""The fault proxy's ``http`` routes as a real process between a real HTTP server and httpx.

Timing bounds hold on a loaded machine: an injected delay is never early (1 ms of timer slack)
and may overshoot by a generous 150 ms; accuracy itself is measured by benchmarks/.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pytest_livesandbox.backends.local.launcher import start_proxy
from pytest_livesandbox.chaos.scope import SCOPE_HEADER
from pytest_livesandbox.faultproxy.client import ProxyClient


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received: method, path, headers, body length."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen = {"method": self.command, "path": self.path, "headers": dict(self.headers)}
        data = json.dumps({**seen, "n": len(body)}).encode()
        # One write: no Nagle / delayed-ACK stall on keep-alive connections.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyClient]:
    process = start_proxy(Path(tmp_path_factory.mktemp("proxy")), parent_pid=0)
    try:
        yield process.wait(timeout=10)
    finally:
        process.process.terminate()
        process.process.wait(5)


@pytest.fixture(scope="module")
def app_port(proxy: ProxyClient) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield proxy.set_route("web", f"127.0.0.1:{server.server_address[1]}", protocol="http")
    server.shutdown()


@pytest.fixture
def client(proxy: ProxyClient, app_port: int) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=5) as http:
        yield http
    proxy.clear()


def toxic(proxy: ProxyClient, scope: str = "", **params: object) -> str:
    return str(proxy.add_toxic("web", "http", "both", dict(params), scope=scope)["id"])


def test_times_two_then_the_app_answers_on_one_kept_alive_connection(
    proxy: ProxyClient, client: httpx.Client
) -> None:
    before = proxy.routes()["web"]["accepted"]
    tid = toxic(proxy, action="status", status=503, times=2, retry_after=1, body="later")
    answers = [client.get("/items") for _ in range(4)]
    assert [r.status_code for r in answers] == [503, 503, 200, 200]
    assert answers[0].text == "later" and answers[0].headers["Retry-After"] == "1"
    assert proxy.routes()["web"]["accepted"] - before <= 1  # keep-alive survived the 503s
    removed = proxy.remove_toxic("web", tid)
    assert removed is not None and (removed["hits"], removed["requests_seen"]) == (2, 4)


def test_path_and_method_leave_other_requests_alone(
    proxy: ProxyClient, client: httpx.Client
) -> None:
    tid = toxic(proxy, action="status", status=500, path="/items*", method=["POST"])
    assert client.post("/items/7", json={}).status_code == 500
    assert client.get("/items/7").status_code == 200
    assert client.post("/accounts", json={}).status_code == 200
    assert proxy.toxic("web", tid)["hits"] == 1


def test_scope_header_selects_the_requests_and_never_reaches_the_app(
    proxy: ProxyClient, client: httpx.Client
) -> None:
    tid = toxic(proxy, scope="t1", action="status", status=503)
    mine = client.get("/", headers={SCOPE_HEADER: "t1"})
    theirs = client.get("/", headers={SCOPE_HEADER: "t2"})
    plain = client.get("/")
    assert (mine.status_code, theirs.status_code, plain.status_code) == (503, 200, 200)
    assert SCOPE_HEADER.lower() not in {k.lower() for k in theirs.json()["headers"]}
    assert proxy.toxic("web", tid)["hits"] == 1


def test_scoped_latency_delays_only_its_requests(proxy: ProxyClient, client: httpx.Client) -> None:
    proxy.add_toxic("web", "latency", "upstream", {"ms": 200}, scope="t1")
    for scope, low, high in (("t1", 0.199, 0.35), ("t2", 0.0, 0.15)):
        began = time.perf_counter()
        assert client.get("/", headers={SCOPE_HEADER: scope}).status_code == 200
        assert low <= time.perf_counter() - began < high, scope


def test_abort_is_a_connection_error_and_delay_holds_the_request(
    proxy: ProxyClient, client: httpx.Client
) -> None:
    tid = toxic(proxy, action="abort", times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get("/")
    assert client.get("/").status_code == 200
    proxy.remove_toxic("web", tid)
    toxic(proxy, action="delay", delay=0.2)
    began = time.perf_counter()
    assert client.post("/x", content=b"a" * 100_000).json()["n"] == 100_000
    assert 0.199 <= time.perf_counter() - began < 0.35


def test_chunked_bodies_pass_and_are_swallowed_when_answered(
    proxy: ProxyClient, client: httpx.Client
) -> None:
    def parts() -> Iterator[bytes]:
        yield from (b"x" * 5000, b"y" * 7, b"z")

    assert client.post("/up", content=parts()).json()["n"] == 5008
    toxic(proxy, action="status", status=503, times=1, method="POST")
    assert client.post("/up", content=parts()).status_code == 503
    assert client.post("/up", content=parts()).json()["n"] == 5008  # same connection, in step


def test_what_is_not_http_passes_through_and_is_counted(proxy: ProxyClient) -> None:
    echo = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    port = proxy.set_route("raw", f"127.0.0.1:{echo.getsockname()[1]}", protocol="http")
    tid = str(proxy.add_toxic("raw", "http", "both", {"action": "abort"})["id"])
    hello = b"\x16\x03\x01\x00\x05hello"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(hello)
        got = b""
        while len(got) < len(hello):
            got += sock.recv(100)
    assert got == hello
    assert proxy.routes()["raw"]["unparsed"] == 1
    removed = proxy.remove_toxic("raw", tid)
    assert removed is not None and (removed["hits"], removed["unparsed"]) == (0, 1)
    echo.close()


def test_bad_toxics_are_refused(proxy: ProxyClient, app_port: int) -> None:
    from pytest_livesandbox.errors import ChaosError

    with pytest.raises(ChaosError, match="action"):
        proxy.add_toxic("web", "http", "both", {"action": "explode"})
    upstream = socket.create_server(("127.0.0.1", 0))
    proxy.set_route("plain", f"127.0.0.1:{upstream.getsockname()[1]}")
    with pytest.raises(ChaosError, match="not an http route"):
        proxy.add_toxic("plain", "latency", "both", {"ms": 1}, scope="t1")
    upstream.close()


def test_a_client_waiting_for_100_continue_is_answered_at_once(
    proxy: ProxyClient, app_port: int
) -> None:
    tid = toxic(proxy, action="status", status=503)
    with socket.create_connection(("127.0.0.1", app_port), timeout=5) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):  # the proxy closes after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in answer
    assert proxy.toxic("web", tid)["hits"] == 1
    proxy.remove_toxic("web", tid)

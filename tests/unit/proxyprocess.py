"""A real fault-proxy process on loopback for unit tests: started, checked to forward, stopped.

with running_proxy([sys.executable, server_py, *args], state_file) as proc:
    assert_db_route_forwards(control_port, route_port, upstream)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_livesandbox.faultproxy import server
from pytest_livesandbox.faultproxy.client import ProxyClient


def proxy_command(state: Path, *args: str) -> list[str]:
    """The stdlib proxy run from the plugin's files with ``--state-file state`` and ``args``."""
    return [sys.executable, server.__file__, "--state-file", str(state), *args]


def free_port() -> int:
    """A loopback port nobody listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_proxy(
    cmd: list[str], state: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd``; yield once it wrote its ``--state-file``; terminate it afterwards."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not state.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the proxy exited: {proc.communicate()[0].decode()}")
            assert time.monotonic() < deadline, "the proxy did not start in 10 s"
            time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        proc.wait(5)


def assert_db_route_forwards(control_port: int, route_port: int, upstream: socket.socket) -> None:
    """The control API shows route ``db`` on ``route_port``, and bytes reach ``upstream``."""
    assert ProxyClient(control_port).routes()["db"]["listen_port"] == route_port
    with socket.create_connection(("127.0.0.1", route_port), timeout=5) as client:
        conn, _ = upstream.accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()

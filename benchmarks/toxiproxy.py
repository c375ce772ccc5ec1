"""Toxiproxy, the peer of our fault proxy, built from its Go module and run on loopback.

    server = Toxiproxy.start()             # builds once, then reuses the cached binary
    port = server.proxy("echo", "127.0.0.1:7000")
    server.latency("echo", ms=25)          # on both streams
    server.clear("echo"); server.stop()

The binary comes from ``go install github.com/Shopify/toxiproxy/v2/cmd/server@VERSION``
(through the Go module proxy) and is kept in ``~/.cache/livesandbox/toxiproxy-VERSION/`` so a
rerun does not rebuild it. (v2.5.0 names the command ``cmd/server``; later versions
``cmd/toxiproxy-server``: both are tried.)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

VERSION = os.environ.get("TOXIPROXY_VERSION", "v2.5.0")
MODULE = "github.com/Shopify/toxiproxy/v2"
CACHE = Path.home() / ".cache" / "livesandbox" / f"toxiproxy-{VERSION}"


def binary() -> Path:
    """The toxiproxy server binary, built on first use (a few minutes), cached after."""
    target = CACHE / "toxiproxy-server"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Toxiproxy needs Go to build (https://go.dev/dl/); `go` is not on PATH")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        errors = []
        for command in ("cmd/toxiproxy-server", "cmd/server"):
            done = subprocess.run(
                [go, "install", f"{MODULE}/{command}@{VERSION}"],
                env={**os.environ, "GOBIN": gobin},
                capture_output=True,
                text=True,
                timeout=900,
            )
            built = [p for p in Path(gobin).iterdir() if p.is_file()]
            if done.returncode == 0 and built:
                shutil.move(str(built[0]), target)
                return target
            errors.append(done.stderr.strip().splitlines()[-1:])
    raise RuntimeError(f"could not build Toxiproxy {VERSION}: {errors}")


def free_port() -> int:
    """A free loopback port (for the API)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Toxiproxy:
    """A running ``toxiproxy-server`` and a few calls of its HTTP API."""

    def __init__(self, process: subprocess.Popen[bytes], api_port: int) -> None:
        self.process = process
        self.api_port = api_port

    @classmethod
    def start(cls) -> Toxiproxy:
        """Start the server on a free loopback port and wait until its API answers."""
        port = free_port()
        process = subprocess.Popen(
            [str(binary()), "-host", "127.0.0.1", "-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process, port)
        deadline = time.monotonic() + 10
        while True:
            try:
                server.call("GET", "/version")
                return server
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise
                time.sleep(0.02)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; raises on a non-2xx answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=5)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise RuntimeError(f"toxiproxy {method} {path}: {response.status} {data!r}")
        return json.loads(data) if data.strip().startswith((b"{", b"[")) else data.decode()

    def proxy(self, name: str, upstream: str) -> int:
        """Create a proxy on a free port; returns the port."""
        made = self.call(
            "POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": upstream}
        )
        return int(made["listen"].rsplit(":", 1)[1])

    def latency(self, name: str, ms: float) -> None:
        """A latency toxic of ``ms / 2`` on each stream (``ms`` per round trip, as ours)."""
        for stream in ("upstream", "downstream"):
            self.call(
                "POST",
                f"/proxies/{name}/toxics",
                {
                    "name": f"lat_{stream}",
                    "type": "latency",
                    "stream": stream,
                    "attributes": {"latency": int(ms / 2), "jitter": 0},
                },
            )

    def clear(self, name: str) -> None:
        """Remove the latency toxics."""
        for stream in ("upstream", "downstream"):
            self.call("DELETE", f"/proxies/{name}/toxics/lat_{stream}")

    def stop(self) -> None:
        """Terminate the server."""
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

#!/usr/bin/env python3
"""Benchmark the fault proxy: overhead without faults, accuracy of injected latency, bring-up cost.

    PYTHONPATH=. python3 benchmarks/fault_proxy.py [--rounds 2000] [--bringup 5]

Everything runs on loopback. The upstream is a TCP echo server in its own process (so it does not
share the client's GIL); the proxy is the real proxy process. Direct and proxied samples are taken
in alternating blocks so that background load hits both alike.

1. Overhead, no fault: round trips of a 64-byte message, direct vs through the proxy -> added
   p50/p99; throughput of a 64 MiB one-way stream (acknowledged at the end), 7 interleaved
   direct/proxied pairs -> median of the per-pair ratios (robust to the load drifting).
2. Accuracy: a ``latency`` toxic of 50, 200 and 1000 ms per exchange (half each way, as the
   ``latency`` marker does) -> measured added delay minus the configured one, p50 and worst.
3. Bring-up (``--bringup N``, needs the demo app): local sandboxes with the proxy on and off,
   alternately, -> median time to ready.

Prints a Markdown table and writes it to docs/benchmarks.md under ``## Fault proxy`` (only that
section is replaced).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_livesandbox.backends.local.launcher import start_proxy
from pytest_livesandbox.faultproxy.client import ProxyClient

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Fault proxy"
MESSAGE = b"x" * 64
STREAM_BYTES = 64 * 1024 * 1024

ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def handle(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        mode = conn.recv(1)
        if mode == b"e":  # echo
            while data := conn.recv(65536):
                conn.sendall(data)
        else:  # sink: count bytes, answer once with "k" when the client half-closes
            while conn.recv(1 << 20):
                pass
            conn.sendall(b"k")
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""


def connect(port: int, mode: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mode)
    return sock


def round_trips(sock: socket.socket, n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        sock.sendall(MESSAGE)
        got = 0
        while got < len(MESSAGE):
            got += len(sock.recv(65536))
        times.append(time.perf_counter() - began)
    return times


def stream(port: int) -> float:
    """Seconds to push STREAM_BYTES one way and get the acknowledgement."""
    chunk = b"s" * (1 << 20)
    with connect(port, b"s") as sock:
        began = time.perf_counter()
        for _ in range(STREAM_BYTES // len(chunk)):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"k"
        return time.perf_counter() - began


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overhead(direct: int, proxied: int, rounds: int) -> dict[str, float]:
    d_times: list[float] = []
    p_times: list[float] = []
    with connect(direct, b"e") as d_sock, connect(proxied, b"e") as p_sock:
        round_trips(d_sock, 100)  # warm up both paths
        round_trips(p_sock, 100)
        for _ in range(10):
            d_times += round_trips(d_sock, rounds // 10)
            p_times += round_trips(p_sock, rounds // 10)
    d_stream, p_stream = [], []
    for _ in range(7):  # interleaved pairs: background load hits both sides of a pair alike
        d_stream.append(stream(direct))
        p_stream.append(stream(proxied))
    return {
        "ratio_median": statistics.median(d / p for d, p in zip(d_stream, p_stream, strict=True)),
        "ratio_min": min(d / p for d, p in zip(d_stream, p_stream, strict=True)),
        "direct_p50_ms": pct(d_times, 0.5) * 1000,
        "direct_p99_ms": pct(d_times, 0.99) * 1000,
        "proxy_p50_ms": pct(p_times, 0.5) * 1000,
        "proxy_p99_ms": pct(p_times, 0.99) * 1000,
        "direct_mib_s": STREAM_BYTES / statistics.median(d_stream) / 2**20,
        "proxy_mib_s": STREAM_BYTES / statistics.median(p_stream) / 2**20,
    }


def accuracy(client: ProxyClient, proxied: int, ms: float, samples: int) -> list[float]:
    """Errors (ms) of the added delay against ``ms``; baseline = proxied without toxics."""
    with connect(proxied, b"e") as sock:
        base = statistics.median(round_trips(sock, 50))
        toxic = client.add_toxic("echo", "latency", "both", {"ms": ms / 2, "jitter": 0})
        try:
            return [(t - base) * 1000 - ms for t in round_trips(sock, samples)]
        finally:
            client.remove_toxic("echo", toxic["id"])


def bringup(n: int) -> dict[str, float] | None:
    """Median seconds to a ready local sandbox with the proxy on and off (alternating)."""
    app = ROOT / "examples" / "demo_app" / "app.py"
    if not app.exists():
        print(f"(skipping bring-up: no demo app at {app})", file=sys.stderr)
        return None
    from pytest_livesandbox.config import SandboxConfig
    from pytest_livesandbox.sandbox import Sandbox

    results: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(2 * n):
        mode = "on" if i % 2 == 0 else "off"
        config = SandboxConfig.from_sources(
            cli={
                "backend": "local",
                "app_cmd": f"{{python}} {app}",
                "health_path": "/readyz",
                "fault_proxy": mode == "on",
            },
            env={},
            ini={},
            rootdir=ROOT,
        )
        with Sandbox(config) as sandbox:
            results[mode].append(sandbox.info.timings["ready_s"])
    return {k: statistics.median(v) for k, v in results.items()}


def render(o: dict[str, float], acc: dict[int, list[float]], up: dict[str, float] | None) -> str:
    lines = [
        HEADING,
        "",
        f"`benchmarks/fault_proxy.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (a shared machine: treat p99 with care). "
        "Loopback TCP, 64-byte round trips, echo server in its own process.",
        "",
        "| measure | direct | through proxy | added / ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    added50 = o["proxy_p50_ms"] - o["direct_p50_ms"]
    added99 = o["proxy_p99_ms"] - o["direct_p99_ms"]
    ratio = o["ratio_median"]
    ratio_met = "yes" if ratio >= 0.5 else "no"
    lines += [
        f"| round trip p50 | {o['direct_p50_ms']:.3f} ms | {o['proxy_p50_ms']:.3f} ms "
        f"| +{added50:.3f} ms | < 0.3 ms | {'yes' if added50 < 0.3 else 'no'} |",
        f"| round trip p99 | {o['direct_p99_ms']:.3f} ms | {o['proxy_p99_ms']:.3f} ms "
        f"| +{added99:.3f} ms | - | - |",
        f"| throughput (64 MiB stream, median of 7 pairs) | {o['direct_mib_s']:.0f} MiB/s | "
        f"{o['proxy_mib_s']:.0f} MiB/s | {ratio:.0%} (worst pair {o['ratio_min']:.0%}) "
        f"| >= 50% | {ratio_met} |",
        "",
        "| injected latency | samples | error p50 | worst error | target (p50) | met |",
        "|---|---|---|---|---|---|",
    ]
    for ms, errors in acc.items():
        p50 = statistics.median(errors)
        worst = max(errors, key=abs)
        lines.append(
            f"| {ms} ms | {len(errors)} | {p50:+.2f} ms | {worst:+.2f} ms | ±5 ms "
            f"| {'yes' if abs(p50) <= 5 else 'no'} |"
        )
    if up:
        lines += [
            "",
            "| local sandbox bring-up (median) | proxy off | proxy on | difference |",
            "|---|---|---|---|",
            f"| time to ready | {up['off']:.3f} s | {up['on']:.3f} s "
            f"| {up['on'] - up['off']:+.3f} s |",
        ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    DOCS.parent.mkdir(exist_ok=True)
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    DOCS.write_text(updated.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--bringup", type=int, default=5, help="sandboxes per mode (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="fault-proxy-bench-"))
    proxy = start_proxy(workdir, parent_pid=os.getpid())
    try:
        assert server.stdout is not None
        direct = int(server.stdout.readline())
        client = proxy.wait(10)
        proxied = client.set_route("echo", f"127.0.0.1:{direct}")
        results = overhead(direct, proxied, args.rounds)
        acc = {
            ms: accuracy(client, proxied, ms, samples)
            for ms, samples in ((50, 40), (200, 20), (1000, 8))
        }
    finally:
        proxy.process.terminate()
        proxy.process.wait(5)
        server.terminate()
        server.wait(5)
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    up = bringup(args.bringup) if args.bringup else None
    text = render(results, acc, up)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

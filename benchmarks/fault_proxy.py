#!/usr/bin/env python3
"""Benchmark the fault proxy: overhead without faults, accuracy of injected latency, bring-up cost.

    PYTHONPATH=. python3 benchmarks/fault_proxy.py [--rounds 2000] [--bringup 5] [--suite-runs 2]

Everything runs on loopback. The upstream is a TCP echo server in its own process (so it does not
share the client's GIL); the proxy is the real proxy process; the peer is Toxiproxy built from
its Go module (``benchmarks/toxiproxy.py``, cached after the first build). Direct, ours and
Toxiproxy samples are taken in alternating blocks so that background load hits all alike.

1. Overhead, no fault: round trips of a 64-byte message, direct vs through each proxy, in 20
   blocks (the order rotated per block) -> added p50 = the median over blocks of the block's p50
   minus direct's p50 in the same block (robust to the load drifting); added p99 over all
   samples (also through ``benchmarks/asyncio_floor.py``, the least a stdlib asyncio forwarder
   costs); throughput of a 64 MiB one-way stream (acknowledged at the end), 7 interleaved
   direct/ours/Toxiproxy triples -> median of the per-triple ratios (robust to load drifting).
2. With a 50 ms latency toxic (25 ms each way, on both proxies): added delay beyond the 50 ms,
   p50/p99, and the throughput of a 16 MiB stream, ours vs Toxiproxy.
3. Accuracy: a ``latency`` toxic of 50, 200 and 1000 ms per exchange (half each way, as the
   ``latency`` marker does) -> measured added delay minus the configured one, p50 and worst.
4. Bring-up (``--bringup N``, needs the demo app): local sandboxes with the proxy on and off,
   alternately, -> median time to ready.
5. A 40-test suite with 8 chaos tests under ``-n 2``, scoped faults vs the exclusive lock
   (``benchmarks/chaos_suite.py``; ``--suite-runs 0`` skips it).

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_suite
from toxiproxy import VERSION as TOXIPROXY_VERSION
from toxiproxy import Toxiproxy

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Fault proxy"
MESSAGE = b"x" * 64
STREAM_BYTES = 64 * 1024 * 1024
BLOCKS = 20

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
        else:  # sink: an 8-byte length, that many bytes, then answer "k" (no half-close:
            # Toxiproxy closes both ways on the client's FIN)
            head = b""
            while len(head) < 8:
                head += conn.recv(8 - len(head))
            left = int.from_bytes(head, "big")
            while left > 0:
                left -= len(conn.recv(min(left, 1 << 20)))
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


def stream(port: int, size: int = STREAM_BYTES) -> float:
    """Seconds to push ``size`` bytes one way and get the acknowledgement."""
    chunk = b"s" * (1 << 20)
    with connect(port, b"s") as sock:
        began = time.perf_counter()
        sock.sendall(size.to_bytes(8, "big"))
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
        assert sock.recv(1) == b"k"
        return time.perf_counter() - began


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overhead(ports: dict[str, int], rounds: int) -> dict[str, dict[str, float]]:
    """Round trips and stream throughput through each of ``ports`` (``direct`` first)."""
    times: dict[str, list[float]] = {name: [] for name in ports}
    block_p50: dict[str, list[float]] = {name: [] for name in ports}
    socks = {name: connect(port, b"e") for name, port in ports.items()}
    names = list(ports)
    try:
        for sock in socks.values():
            round_trips(sock, 100)  # warm up every path
        for block in range(BLOCKS):
            # Rotate the order so that no path always follows another; pair the blocks in time.
            for name in names[block % len(names) :] + names[: block % len(names)]:
                samples = round_trips(socks[name], max(10, rounds // BLOCKS))
                times[name] += samples
                block_p50[name].append(statistics.median(samples))
    finally:
        for sock in socks.values():
            sock.close()
    streams: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(7):  # interleaved: background load hits every path of a triple alike
        for name, port in ports.items():
            streams[name].append(stream(port))
    found = {}
    for name in ports:
        ratios = [d / p for d, p in zip(streams["direct"], streams[name], strict=True)]
        paired = [b - d for b, d in zip(block_p50[name], block_p50["direct"], strict=True)]
        found[name] = {
            "added_p50_ms": statistics.median(paired) * 1000,
            "p50_ms": pct(times[name], 0.5) * 1000,
            "p99_ms": pct(times[name], 0.99) * 1000,
            "mib_s": STREAM_BYTES / statistics.median(streams[name]) / 2**20,
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
        }
    return found


def with_latency(
    client: ProxyClient, ours: int, peer: Toxiproxy, theirs: int, ms: float = 50
) -> dict[str, dict[str, float]]:
    """Both proxies with the same latency toxic: added delay beyond ``ms``, and throughput."""
    toxic = client.add_toxic("echo", "latency", "both", {"ms": ms / 2, "jitter": 0})
    peer.latency("echo", ms)
    ports = {"ours": ours, "toxiproxy": theirs}
    errors: dict[str, list[float]] = {name: [] for name in ports}
    streams: dict[str, list[float]] = {name: [] for name in ports}
    try:
        socks = {name: connect(port, b"e") for name, port in ports.items()}
        for _ in range(6):
            for name, sock in socks.items():
                errors[name] += [(t * 1000) - ms for t in round_trips(sock, 10)]
        for sock in socks.values():
            sock.close()
        for _ in range(3):
            for name, port in ports.items():
                streams[name].append(stream(port, 16 * 2**20))
    finally:
        client.remove_toxic("echo", toxic["id"])
        peer.clear("echo")
    return {
        name: {
            "p50_ms": pct(errors[name], 0.5),
            "p99_ms": pct(errors[name], 0.99),
            "mib_s": 16 / statistics.median(streams[name]),
        }
        for name in ports
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


def ratio_text(ours: float, theirs: float) -> str:
    """``ours / theirs``, or ``-`` when the peer added nothing measurable."""
    return f"{ours / theirs:.2f}x" if theirs > 0.001 else "-"


def render(
    o: dict[str, dict[str, float]],
    lat: dict[str, dict[str, float]],
    acc: dict[int, list[float]],
    up: dict[str, float] | None,
    suite: str,
) -> str:
    """The section's Markdown."""
    d, us, tp = o["direct"], o["ours"], o["toxiproxy"]
    lines = [
        HEADING,
        "",
        f"`benchmarks/fault_proxy.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (a shared machine: treat p99 with care). "
        "Loopback TCP, 64-byte round trips, echo server in its own process; peer: Toxiproxy "
        f"{TOXIPROXY_VERSION} built from its Go module, measured in the same run, interleaved.",
        "",
        "| measure (no toxic) | direct | ours | Toxiproxy | ours vs Toxiproxy | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    added = {
        k: {"p50_ms": o[k]["added_p50_ms"], "p99_ms": o[k]["p99_ms"] - d["p99_ms"]}
        for k in ("ours", "toxiproxy")
    }
    p50_ratio = added["ours"]["p50_ms"] / max(added["toxiproxy"]["p50_ms"], 1e-9)
    tput_ratio = us["mib_s"] / tp["mib_s"]
    lines += [
        f"| added round trip p50 | {d['p50_ms']:.3f} ms | +{added['ours']['p50_ms']:.3f} ms "
        f"| +{added['toxiproxy']['p50_ms']:.3f} ms | {p50_ratio:.2f}x | <= 1.2x "
        f"| {'yes' if p50_ratio <= 1.2 else 'no'} |",
        f"| added p50, bare asyncio forwarder (`asyncio_floor.py`, the floor for any stdlib "
        f"proxy) | - | +{o['floor']['added_p50_ms']:.3f} ms | - "
        f"| {ratio_text(o['floor']['added_p50_ms'], added['toxiproxy']['p50_ms'])} "
        "| - | - |",
        f"| added round trip p99 | {d['p99_ms']:.3f} ms | +{added['ours']['p99_ms']:.3f} ms "
        f"| +{added['toxiproxy']['p99_ms']:.3f} ms "
        f"| {ratio_text(added['ours']['p99_ms'], added['toxiproxy']['p99_ms'])} | - | - |",
        f"| throughput, 64 MiB stream (median of 7) | {d['mib_s']:.0f} MiB/s "
        f"| {us['mib_s']:.0f} MiB/s ({us['ratio_median']:.0%} of direct) "
        f"| {tp['mib_s']:.0f} MiB/s ({tp['ratio_median']:.0%}) | {tput_ratio:.2f}x | >= 1x "
        f"| {'yes' if tput_ratio >= 1 else 'no'} |",
        "",
        "The added p50 is tens of microseconds per round trip for every proxy; ours is measured "
        "against a bare asyncio forwarder in the same run (the floor for a standard-library "
        "proxy, which ours must stay: it runs by path in a child process, a container or a pod). "
        "Most of the gap to Toxiproxy is that floor: Go's runtime parks its network poller "
        "threads only after spinning, so it wakes faster on a loaded machine than a Python "
        "process sleeping in epoll.",
        "",
        "| with a 50 ms latency toxic (25 ms each way) | ours | Toxiproxy | ours vs Toxiproxy |",
        "|---|---|---|---|",
        f"| added beyond 50 ms, p50 | {lat['ours']['p50_ms']:+.2f} ms "
        f"| {lat['toxiproxy']['p50_ms']:+.2f} ms | - |",
        f"| added beyond 50 ms, p99 | {lat['ours']['p99_ms']:+.2f} ms "
        f"| {lat['toxiproxy']['p99_ms']:+.2f} ms | - |",
        f"| throughput, 16 MiB stream (median of 3) | {lat['ours']['mib_s']:.0f} MiB/s "
        f"| {lat['toxiproxy']['mib_s']:.0f} MiB/s "
        f"| {lat['ours']['mib_s'] / lat['toxiproxy']['mib_s']:.2f}x |",
        "",
        "| injected latency (ours) | samples | error p50 | worst error | target (p50) | met |",
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
    if suite:
        lines += ["", suite]
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
    parser.add_argument("--suite-runs", type=int, default=2, help="per variant (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="fault-proxy-bench-"))
    proxy = start_proxy(workdir, parent_pid=os.getpid())
    peer = Toxiproxy.start()
    floor: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        direct = int(server.stdout.readline())
        client = proxy.wait(10)
        proxied = client.set_route("echo", f"127.0.0.1:{direct}")
        theirs = peer.proxy("echo", f"127.0.0.1:{direct}")
        floor = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "asyncio_floor.py"), str(direct)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert floor.stdout is not None
        ports = {
            "direct": direct,
            "ours": proxied,
            "toxiproxy": theirs,
            "floor": int(floor.stdout.readline()),
        }
        results = overhead(ports, args.rounds)
        lat = with_latency(client, proxied, peer, theirs)
        acc = {
            ms: accuracy(client, proxied, ms, samples)
            for ms, samples in ((50, 40), (200, 20), (1000, 8))
        }
    finally:
        if floor is not None:
            floor.terminate()
            floor.wait(5)
        peer.stop()
        proxy.process.terminate()
        proxy.process.wait(5)
        server.terminate()
        server.wait(5)
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    up = bringup(args.bringup) if args.bringup else None
    runs = args.suite_runs
    suite = chaos_suite.render(chaos_suite.measure(runs), runs) if runs else ""
    text = render(results, lat, acc, up, suite)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

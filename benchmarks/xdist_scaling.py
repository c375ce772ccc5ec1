#!/usr/bin/env python3
"""Wall time of an I/O-bound live suite at -n 0/2/4, and the cost of reporting, on the local backend.

    PYTHONPATH=. python3 benchmarks/xdist_scaling.py [--tests 240] [--repeat 3] [--no-write]

The suite: each test does a few HTTP requests to the demo app (one of them ``/slow?ms=20``, the
app sleeping server-side) and one ``live_db`` query. Every configuration is a complete pytest run
in a subprocess (start-up, one sandbox bring-up, the tests, teardown); runs are interleaved round
by round so drift hits every configuration alike; the median of ``--repeat`` rounds is reported.
Reporting on = JSONL + HTML + webhook to a local receiver (stdlib HTTP server in this process).
Writes the "xdist scaling and reporting overhead" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "examples" / "demo_app" / "app.py"

SUITE = """
import pytest


@pytest.mark.parametrize("n", range({tests}))
def test_io_bound(live_http, live_db, n):
    assert live_http.get("/slow?ms=20").status_code == 200
    assert live_http.get("/healthz").status_code == 200
    assert live_http.get(f"/items/{{n + 1}}").status_code in (200, 404)
    assert live_db.execute("select count(*) from items").fetchone()[0] >= 0
"""


class _Receiver(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def run(folder: Path, workers: int, reporting: str | None) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "--sandbox=local", f"--sandbox-app-cmd={sys.executable} {APP}",
        "--sandbox-health-path=/readyz", "-n", str(workers),
    ]  # fmt: skip
    if reporting:
        cmd += [
            "--sandbox-report=out/r.jsonl",
            "--sandbox-html=out/r.html",
            f"--sandbox-report-url={reporting}",
        ]
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}{proc.stderr}")
    return wall, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    configs: list[tuple[str, int, str | None]] = [
        ("-n 0", 0, None),
        ("-n 0 + reports", 0, url),
        ("-n 2", 2, None),
        ("-n 2 + reports", 2, url),
        ("-n 4", 4, None),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    with tempfile.TemporaryDirectory(prefix="xdist-bench-") as tmp:
        folder = Path(tmp)
        (folder / "test_suite.py").write_text(SUITE.format(tests=args.tests))
        run(folder, 0, None)  # warm-up: template cache, bytecode
        for round_no in range(args.repeat):
            for name, workers, reporting in configs:
                before = _Receiver.count
                wall, _ = run(folder, workers, reporting)
                times[name].append(wall)
                if reporting:
                    lines = (folder / "out" / "r.jsonl").read_text().splitlines()
                    assert len(lines) == args.tests + 2, len(lines)
                    assert _Receiver.count - before == len(lines), "webhook lost events"
                    assert json.loads(lines[-1])["counts"] == {"passed": args.tests}
                print(f"round {round_no + 1}: {name:<16} {wall:6.2f} s", flush=True)
    server.shutdown()

    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["-n 0"]
    rows = [
        "| run | median wall time | vs -n 0 | all runs |",
        "|---|---:|---:|---|",
    ]
    for name, _, _ in configs:
        runs = ", ".join(f"{v:.2f}" for v in times[name])
        rows.append(f"| `{name}` | {med[name]:.2f} s | {med[name] / base:.2f}x | {runs} |")
    over0 = med["-n 0 + reports"] / med["-n 0"] - 1
    over2 = med["-n 2 + reports"] / med["-n 2"] - 1
    body = "\n".join(
        [
            f"{args.tests} I/O-bound tests against the local backend (each: `/slow?ms=20`, "
            "`/healthz`, `/items/<n>` over HTTP and one `live_db` query), whole pytest runs "
            f"including start-up, bring-up and teardown; median of {args.repeat} interleaved "
            "rounds (`benchmarks/xdist_scaling.py`).",
            "",
            *rows,
            "",
            f"- `-n 2` takes **{med['-n 2'] / base:.2f}x** the time of `-n 0` (target <= 0.6x); "
            f"`-n 4` {med['-n 4'] / base:.2f}x (2 cores: the extra workers only overlap waits).",
            f"- Reporting on (JSONL + HTML + webhook to a local receiver) costs "
            f"**{over0 * 100:+.1f}%** at `-n 0` and **{over2 * 100:+.1f}%** at `-n 2` "
            "(target <= 2%). Every reporting run was checked: the JSONL has every event and "
            "the receiver got every one.",
        ]
    )
    print(body)
    if not args.no_write:
        print("wrote", write_section("xdist scaling and reporting overhead", body))


if __name__ == "__main__":
    main()

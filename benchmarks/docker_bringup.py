"""Docker backend against the local backend: time to first test and per-test cost.

    python benchmarks/docker_bringup.py [--runs 3] [--tests 20]

Each run is a real ``pytest`` subprocess over the same generated suite (``--tests`` HTTP tests
through ``live_http`` and as many ``live_db`` tests), alternating local and docker so both see the
same machine state. Measured from the events report (``--sandbox-report``):

- time to first test: process start -> first ``test_finished`` event (interpreter, plugin,
  sandbox bring-up, first test);
- per-test cost: median ``duration`` (setup + call + teardown) of the HTTP and the DB tests;
- teardown: ``teardown_s`` of ``run_finished``.

Needs a Docker daemon with the demo images (``scripts/docker-up``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent
APP = f"{sys.executable} {REPO / 'examples/demo_app/app.py'}"
BACKENDS = {
    "local": ["--sandbox=local", f"--sandbox-app-cmd={APP}"],
    "docker": ["--sandbox=docker", "--sandbox-image=app=localhost/livesandbox/demo-app:dev"],
}


def suite(folder: Path, tests: int) -> None:
    lines = ["import pytest", ""]
    lines += [f"@pytest.mark.parametrize('i', range({tests}))"]
    lines += [
        "def test_http(live_http, i):",
        "    assert live_http.get('/items').status_code == 200",
        "",
    ]
    lines += [f"@pytest.mark.parametrize('i', range({tests}))"]
    lines += [
        "def test_db(live_db, i):",
        "    live_db.execute('insert into items(name) values (%s)', (str(i),))",
        "",
    ]
    (folder / "test_bench.py").write_text("\n".join(lines))
    (folder / "pytest.ini").write_text("[pytest]\nlivesandbox_health_path = /readyz\n")


def one_run(folder: Path, backend: str) -> dict[str, float]:
    report = folder / f"{backend}.jsonl"
    report.unlink(missing_ok=True)
    began = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--sandbox-report={report}",
            *BACKENDS[backend],
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    wall = time.time() - began
    if proc.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    events = [json.loads(line) for line in report.read_text().splitlines()]
    finished = [e for e in events if e["event"] == "test_finished"]
    started = next(e for e in events if e["event"] == "run_started")
    return {
        "ready": float(started["sandbox"]["timings"]["ready_s"]),
        "first_test": finished[0]["time"] - began,
        "http": statistics.median(e["duration"] for e in finished if "test_http" in e["nodeid"]),
        "db": statistics.median(e["duration"] for e in finished if "test_db" in e["nodeid"]),
        "teardown": float(events[-1]["teardown_s"]),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite(folder, args.tests)
        for name in BACKENDS:  # warm-up: template cache, page cache of the images
            one_run(folder, name)
        for _ in range(args.runs):
            for name in BACKENDS:
                results[name].append(one_run(folder, name))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def row(label: str, key: str, scale: float, unit: str) -> str:
        local, docker = med("local", key) * scale, med("docker", key) * scale
        return f"| {label} | {docker:.3f} {unit} | {local:.3f} {unit} | {docker / local:.1f}x |"

    body = "\n".join(
        [
            f"`python benchmarks/docker_bringup.py --runs {args.runs} --tests {args.tests}`: the same generated suite "
            f"({args.tests} `live_http` GETs + {args.tests} `live_db` inserts) as a real `pytest` subprocess per run, "
            f"local and docker alternating; median of {args.runs} runs after one warm-up each.",
            "",
            "| what | docker (app image + postgres:15 container) | local (embedded PostgreSQL + app process) | docker / local |",
            "|---|---|---|---|",
            row("sandbox ready (`ready_s`)", "ready", 1, "s"),
            row("time to first test (process start -> first test finished)", "first_test", 1, "s"),
            row("per-test cost, `live_http` GET (setup + call + teardown)", "http", 1000, "ms"),
            row("per-test cost, `live_db` insert (rolled back)", "db", 1000, "ms"),
            row("teardown", "teardown", 1, "s"),
            row("whole run (wall clock)", "wall", 1, "s"),
            "",
            "Docker's extra start-up is `initdb` inside the PostgreSQL container (the local backend copies a "
            "cached template) and container creation; per test, requests cross docker-proxy on 127.0.0.1.",
        ]
    )
    print(body)
    print(f"written to {write_section('Docker backend', body)}")


if __name__ == "__main__":
    main()

"""Cost of a clock fault in the app's container (docker) and pod (kube), against a restart.

    python benchmarks/clock_containers.py [--clocks 20] [--restarts 2] [--backends docker,kube]

Clock: ``chaos.clock(offset="+1h")`` applied and removed: on docker a control-file replacement in
the bind-mounted folder, on kube an exec into the clock sidecar of each app pod; both ways the
app's ``Date`` header is read to check its clock moved and came back. Peer: the other way to
give an app another clock, restarting it under a new ``FAKETIME`` (an ``evict_pod`` until it
answers again). Kube needs KUBECONFIG (cluster/up), docker the demo images (scripts/docker-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pytest_livesandbox.backends import load_backend
from pytest_livesandbox.chaos.markers import plan_from_markers
from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {
    "docker": {"image": "app=localhost/livesandbox/demo-app:dev"},
    "kube": {
        "manifests": str(REPO / "examples/demo_app/k8s"),
        "image": "postgres=localhost/livesandbox/postgres:15",
        "startup_timeout": "120s",
    },
}


def config(backend: str) -> SandboxConfig:
    cli = {"backend": backend, "health_path": "/readyz", "fake_clock": "on", **SETTINGS[backend]}
    return SandboxConfig.from_sources(cli=cli, env={}, ini={}, rootdir=REPO)


def timed(runs: int, once: Callable[[], None]) -> list[float]:
    once()  # warm-up
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        once()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def measure(backend: str, clocks: int, restarts: int) -> tuple[list[float], list[float]]:
    (hour,) = plan_from_markers([("clock", (), {"offset": "+1h"})]).faults
    (evict,) = plan_from_markers([("evict_pod", (), {})]).faults
    with Sandbox(config(backend)) as sandbox:
        driver = load_backend(backend).chaos(sandbox.info, "bench")
        clock = timed(clocks, lambda: driver.apply(hour).remove())
        restart = timed(restarts, lambda: driver.apply(evict).remove())
        assert driver.baseline_problems(30) == []
    return clock, restart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--backends", default="docker,kube")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        clock, restart = measure(backend, args.clocks, args.restarts)
        c, r = statistics.median(clock), statistics.median(restart)
        p90 = sorted(clock)[int(0.9 * (len(clock) - 1))]
        rows.append(
            f"| {backend} | {c:.1f} ms ({p90:.1f}) | {r:.0f} ms: restart the app under a new "
            f"`FAKETIME` (evict until it answers) | {r / c:.0f}x faster |"
        )
    body = f"""
`python benchmarks/clock_containers.py --clocks {args.clocks} --restarts {args.restarts}`
(median, p90 in brackets; the demo app's container / pod with libfaketime preloaded; load
average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end).

| backend | clock fault apply + remove, app's `Date` checked both ways | peer | ratio |
|---|---|---|---|
{chr(10).join(rows)}

On docker the fault is a file replacement in the bind-mounted folder plus two HTTP requests for
the app's `Date`; on kube each direction is one `pods/exec` into the clock sidecar per app pod
(through the API server) plus the `Date` request through the port-forward.
"""
    print(body)
    write_section("The app's clock in containers", body)


if __name__ == "__main__":
    main()

"""Wall time of a 40-test suite with 8 chaos tests under ``pytest -n 2``: scoped vs exclusive.

    python benchmarks/chaos_suite.py [--runs 2]     (also run by benchmarks/fault_proxy.py)

The suite, generated into a temporary folder, runs against the local backend and the demo app:

- 32 plain tests: three ``GET /items`` each (tens of milliseconds);
- 8 chaos tests on the client -> app path, each about a second as retry tests are: four with
  ``@latency(ms=200, target="app")`` and five requests, four with
  ``@http_fault(status=503, times=3)`` and a client retrying every 250 ms until it gets a 200.

``scoped``: the suite as written: the chaos tests hold the sandbox lock shared and their faults
act only on their own requests. ``exclusive``: the same tests also ask for the ``chaos`` fixture,
which (as every chaos test did before faults were scoped) takes the sandbox exclusively. Both
variants run alternately, ``--runs`` times each, in a private ``LIVESANDBOX_STATE_DIR``;
measured: the whole ``pytest`` process (wall) and the test span (first test start -> last test
end, from the JSONL report: bring-up and teardown excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "demo_app" / "app.py"

PLAIN = """
def test_plain_{i}(live_http):
    for _ in range(3):
        assert live_http.get("/items").status_code == 200
"""
LATENCY = """
@pytest.mark.latency(ms=200, target="app")
def test_latency_{i}(live_http{extra}):
    for _ in range(5):
        assert live_http.get("/healthz").status_code == 200
"""
RETRY = """
@pytest.mark.http_fault(status=503, times=3, path="/items")
def test_retry_{i}(live_http{extra}):
    attempts = 1
    while live_http.get("/items").status_code != 200:
        attempts += 1
        time.sleep(0.25)
    assert attempts == 4
"""


def write_suite(folder: Path, exclusive: bool) -> None:
    """The 40 tests, chaos tests spread through the file as a real suite would have them."""
    extra = ", chaos" if exclusive else ""
    parts = ["import time\n\nimport pytest\n"]
    chaos = 0
    for i in range(40):
        if i % 5 == 2:
            template = LATENCY if chaos % 2 == 0 else RETRY
            parts.append(template.format(i=i, extra=extra))
            chaos += 1
        else:
            parts.append(PLAIN.format(i=i))
    assert chaos == 8
    (folder / "test_suite.py").write_text("\n".join(parts))
    (folder / "pytest.ini").write_text(
        textwrap.dedent(
            f"""
            [pytest]
            livesandbox_backend = local
            livesandbox_app_cmd = {{python}} {APP}
            livesandbox_health_path = /readyz
            """
        )
    )


def one_run(exclusive: bool) -> dict[str, float]:
    """One pytest -n 2 run of the suite; seconds (wall, span)."""
    with tempfile.TemporaryDirectory(prefix="chaos-suite-") as tmp:
        folder = Path(tmp)
        write_suite(folder, exclusive)
        report = folder / "report.jsonl"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVESANDBOX_")},
            "LIVESANDBOX_STATE_DIR": str(folder / "state"),
        }
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider",
             f"--sandbox-report={report}"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"the suite failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
        events = [json.loads(line) for line in report.read_text().splitlines()]
        tests = [e for e in events if e["event"] == "test_finished"]
        assert len(tests) == 40, len(tests)
        span = max(e["finished"] for e in tests) - min(e["started"] for e in tests)
        return {"wall": wall, "span": span}


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Median wall and span per variant, the variants alternating."""
    found: dict[str, list[dict[str, float]]] = {"scoped": [], "exclusive": []}
    for _ in range(runs):
        for name in ("exclusive", "scoped"):
            found[name].append(one_run(exclusive=name == "exclusive"))
    return {
        name: {key: statistics.median(r[key] for r in results) for key in ("wall", "span")}
        for name, results in found.items()
    }


def render(result: dict[str, dict[str, float]], runs: int) -> str:
    """The Markdown rows of the suite comparison."""
    scoped, exclusive = result["scoped"], result["exclusive"]
    ratio = scoped["span"] / exclusive["span"]
    return "\n".join(
        [
            f"40-test suite, 8 chaos tests (client -> app faults, ~1 s each), `pytest -n 2`, "
            f"local backend, median of {runs} alternating runs per variant "
            "(see `benchmarks/chaos_suite.py`):",
            "",
            "| variant | test span | whole run (wall) |",
            "|---|---|---|",
            f"| exclusive lock (chaos tests run alone, as before) | {exclusive['span']:.2f} s "
            f"| {exclusive['wall']:.2f} s |",
            f"| scoped faults (chaos tests beside plain ones) | {scoped['span']:.2f} s "
            f"| {scoped['wall']:.2f} s |",
            f"| scoped / exclusive | {ratio:.2f}x (target <= 0.6x: "
            f"{'met' if ratio <= 0.6 else 'not met'}) "
            f"| {scoped['wall'] / exclusive['wall']:.2f}x |",
            "",
        ]
    )


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(render(measure(args.runs), args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

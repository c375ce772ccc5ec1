"""Warm sandboxes: time to first test cold vs reused vs pool claim, local, docker and kube, with
testcontainers as the peer.

    python benchmarks/warm_start.py [--runs 3] [--tests 10] [--no-kube] [--no-docker] \
        [--pool-python VENV/bin/python]

Every run is a real ``pytest`` subprocess over the same suite as ``benchmarks/peers.py`` (HTTP
requests to the demo app and queries per test), measured by the same timing plugin:

- time to first test: process start -> first test body;
- ``ready_s`` (from the events report): provisioning, or for a reused sandbox attach + reset;
- pool claim (kube): before each measured run the pool is emptied and ``livesandbox warm
  --count 1`` provisions one fresh sandbox (not timed); the run claims it;
- ``--pool-python``: the pool claim again with another interpreter, e.g. a virtualenv with only
  ``pip install 'pytest-livesandbox[kube]'`` (a user's CI image has no other pytest plugins);
- the peer: testcontainers-python starting a PostgreSQL container per run (plus the demo app,
  as its conftest in peers.py does), the way a testcontainers user gets a database.

It also measures the ways ``postgres/reset.py`` can reset a reused database at 30 tables
(the reset with small tables deleted + seed reload, the same with every table truncated, a clone
from a template database) on an embedded PostgreSQL, which is how the default was picked. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section
from peers import SUITES, TESTS, TIMING_PLUGIN, docker_problem

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "examples" / "demo_app" / "k8s"
KUBE = [
    "--sandbox=kube",
    f"--sandbox-manifests={MANIFESTS}",
    "--sandbox-image=postgres=localhost/livesandbox/postgres:15",
    "--sandbox-startup-timeout=120s",
    "--sandbox-namespace-prefix=bench",
]
POOL_TARGET_S = 1.5
DOCKER = [
    "--sandbox=docker",
    "--sandbox-image=app=localhost/livesandbox/demo-app:dev",
    "--sandbox-image=postgres=postgres:15",
    "--sandbox-startup-timeout=90s",
]


def make_suite(folder: Path, suite: str, tests: int) -> None:
    spec = SUITES[suite]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text(str(spec["conftest"]))
    (folder / "pytest.ini").write_text(str(spec["ini"]))
    (folder / "bench_timing.py").write_text(TIMING_PLUGIN)
    (folder / "test_suite.py").write_text("".join(TESTS.format(i=i) for i in range(tests)))


def run(folder: Path, *options: str, python: str = sys.executable) -> dict[str, float]:
    out, report = folder / "timing.json", folder / "r.jsonl"
    out.unlink(missing_ok=True)
    report.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_OUT=str(out), PYTHONPATH=str(folder))
    env["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    cmd = [python, "-m", "pytest", "-q", "-p", "bench_timing", "-p", "no:cacheprovider"]
    if (folder / "conftest.py").read_text().count("live_http"):
        cmd.append(f"--sandbox-report={report}")
    began = time.time()
    proc = subprocess.run([*cmd, *options], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.time() - began
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"run failed ({options}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    result = {"first_test": json.loads(out.read_text())["first_test"] - began, "wall": wall}
    if report.exists():
        started = json.loads(report.read_text().splitlines()[0])
        result["ready_s"] = started["sandbox"]["timings"]["ready_s"]
        result["reused"] = float(bool(started.get("reused")))
    return result


def median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def series(folder: Path, runs: int, *options: str, reuse: bool = False) -> list[dict[str, float]]:
    """``runs`` measured runs; with ``reuse``, after one warm-up run that leaves a warm sandbox."""
    opts = (*options, "--sandbox-reuse") if reuse else options
    if reuse:
        run(folder, *opts)
    results = [run(folder, *opts) for _ in range(runs)]
    if reuse:
        assert all(r["reused"] for r in results), "a reuse run provisioned instead of reusing"
    return results


def pool_series(
    folder: Path,
    runs: int,
    owner: dict[str, str],
    backend: str,
    *options: str,
    python: str = sys.executable,
) -> list[dict[str, float]]:
    """``runs`` runs that each claim a sandbox ``livesandbox warm --count 1`` just made."""
    results = []
    run(folder, *options, "--sandbox-reuse", python=python)  # warm-up: this interpreter's .pyc
    for _ in range(runs):
        cleanup(backend, owner)  # the previous run handed its sandbox back warm: not a pool one
        cmd = [python, "-m", "pytest_livesandbox.cli", "warm", "--count", "1"]
        warm = subprocess.run(
            [*cmd, "--rootdir", str(folder), "--", *options, "--sandbox-reuse"],
            capture_output=True,
            text=True,
            check=False,
        )
        if warm.returncode != 0:
            raise SystemExit(f"livesandbox warm failed:\n{warm.stdout}\n{warm.stderr}")
        results.append(run(folder, *options, "--sandbox-reuse", python=python))
    assert all(r["reused"] for r in results), "a pool run provisioned instead of claiming"
    return results


def cleanup(backend: str, owner_env: dict[str, str]) -> None:
    """Remove this benchmark's warm sandboxes (scoped by backend and our private owner)."""
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_livesandbox.cli",
            "ls",
            "--backend",
            backend,
            "--owner",
            owner_env["owner"],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in listing.stdout.splitlines()[1:]:
        subprocess.run(
            [sys.executable, "-m", "pytest_livesandbox.cli", "down", line.split()[0]],
            capture_output=True,
            check=False,
        )


def reset_strategies(tables: int = 30, rounds: int = 7) -> dict[str, float]:
    """Median seconds of one reset, truncate vs clone, at ``tables`` tables with a few rows."""
    import psycopg

    from pytest_livesandbox.backends.local.backend import LocalBackend
    from pytest_livesandbox.config import SandboxConfig
    from pytest_livesandbox.postgres.reset import CloneReset, DatabaseReset, SnapshotReset

    strategies: dict[str, DatabaseReset] = {
        "delete": SnapshotReset(),
        "truncate": SnapshotReset(small_bytes=-1),  # every dirtied table truncated
        "clone": CloneReset(),
    }

    config = SandboxConfig.from_sources(
        cli={"backend": "local", "fault_proxy": False}, env={}, ini={}, rootdir=REPO
    )
    backend = LocalBackend()
    info = backend.provision(config, "bench-reset", "bench")
    try:
        assert info.db is not None
        with psycopg.connect(info.db.dsn, autocommit=True) as conn:
            for t in range(tables):
                conn.execute(f"create table t{t} (id bigserial primary key, v text)")
                conn.execute(f"create index on t{t} (v)")
            conn.execute("insert into t0 (v) values ('seed')")  # post-startup seed data
        timings: dict[str, float] = {}
        for name, strategy in strategies.items():
            strategy.snapshot(info.db)
            samples = []
            for _ in range(rounds):
                with psycopg.connect(info.db.dsn, autocommit=True) as conn:
                    for t in range(tables):
                        conn.execute(f"insert into t{t} (v) select 'x' from generate_series(1, 20)")
                began = time.perf_counter()
                strategy.restore(info.db)
                samples.append(time.perf_counter() - began)
                with psycopg.connect(info.db.dsn) as conn:
                    assert conn.execute("select count(*) from t1").fetchone() == (0,)
                    assert conn.execute("select count(*) from t0").fetchone() == (1,)
            timings[name] = statistics.median(samples)
        return timings
    finally:
        backend.teardown(info)


def pool_line(pool: list[dict[str, float]], where: str) -> str:
    """The pool claim against its target (time to first test <= 1.5 s)."""
    if not pool:
        return ""
    first, ready = median(pool, "first_test"), median(pool, "ready_s")
    met = "met" if first <= POOL_TARGET_S else "not met"
    each = ", ".join(f"{r['first_test']:.2f}" for r in pool)
    return (
        f"Kube pool claim {where}, time to first test (target <= {POOL_TARGET_S} s): "
        f"{first:.2f} s ({met}; runs: {each}); of "
        f"it `ready_s` {ready:.3f} s (the claim, two port-forwards, the health probe, the reset; "
        "the generated `CoreV1Api` is not imported on this path, see "
        "`backends/kube/coreapi.py`), the rest is the pytest process starting, importing the "
        "plugin and collecting.\n\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=10)
    parser.add_argument("--no-kube", action="store_true")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--pool-python", help="the pool claim again with this interpreter")
    args = parser.parse_args()
    tag = f"bench-{os.getpid()}"
    os.environ["BUILD_TAG"] = tag  # our own owner label: cleanup touches only this run's
    owner = {"owner": f"build_tag-{tag}"}
    work = Path(tempfile.mkdtemp(prefix="livesandbox-warm-"))
    os.environ["LIVESANDBOX_STATE_DIR"] = str(work / "state")
    rows, notes = [], []
    load_before = os.getloadavg()[0]
    try:
        resets = reset_strategies()
        ours = work / "ours"
        make_suite(ours, "pytest-livesandbox", args.tests)
        run(ours)  # warm-up: caches, the initdb template
        local_cold = series(ours, args.runs)
        local_warm = series(ours, args.runs, reuse=True)
        cleanup("local", owner)
        peer = work / "peer"
        make_suite(peer, "testcontainers-python", args.tests)
        problem = docker_problem()
        peer_runs: list[dict[str, float]] = []
        if problem:
            notes.append(f"- testcontainers could not run here: {problem}")
        else:
            try:
                run(peer)  # warm-up
                peer_runs = series(peer, args.runs)
            except SystemExit as exc:  # the engine refused it (e.g. no default bridge network)
                lines = str(exc).splitlines()
                reason = next((ln[1:] for ln in lines if ln.startswith("E ") and "Error" in ln), "")
                notes.append(f"- testcontainers could not run here: {reason.strip()[:300]}")
        docker_cold: list[dict[str, float]] = []
        docker_warm: list[dict[str, float]] = []
        if not args.no_docker and not problem:
            run(ours, *DOCKER)  # warm-up: images in the page cache
            docker_cold = series(ours, args.runs, *DOCKER)
            docker_warm = series(ours, args.runs, *DOCKER, reuse=True)
            cleanup("docker", owner)
        kube_cold: list[dict[str, float]] = []
        kube_warm: list[dict[str, float]] = []
        kube_pool: list[dict[str, float]] = []
        lean_pool: list[dict[str, float]] = []
        if not args.no_kube:
            kube_cold = series(ours, args.runs, *KUBE)
            kube_warm = series(ours, args.runs, *KUBE, reuse=True)
            kube_pool = pool_series(ours, args.runs, owner, "kube", *KUBE)
            if args.pool_python:
                lean_pool = pool_series(
                    ours, args.runs, owner, "kube", *KUBE, python=args.pool_python
                )
            cleanup("kube", owner)
    finally:
        cleanup("local", owner)
        if not args.no_docker:
            cleanup("docker", owner)
        if not args.no_kube:
            cleanup("kube", owner)
        shutil.rmtree(work, ignore_errors=True)

    def row(what: str, results: list[dict[str, float]], base: list[dict[str, float]]) -> str:
        if not results:
            return f"| {what} | n/a | n/a | n/a |"
        first = median(results, "first_test")
        ratio = f"{first / median(base, 'first_test'):.2f}x" if base else "-"
        ready = f"{median(results, 'ready_s'):.3f} s" if "ready_s" in results[0] else "-"
        return f"| {what} | {first:.2f} s | {ready} | {ratio} |"

    rows = [
        row("local, cold (provision)", local_cold, []),
        row("local, reused (`--sandbox-reuse`)", local_warm, local_cold),
        row("testcontainers: PostgreSQL container per run", peer_runs, local_cold),
        row("docker, cold (provision)", docker_cold, []),
        row("docker, reused (`--sandbox-reuse`)", docker_warm, docker_cold),
        row("kube, cold (provision)", kube_cold, []),
        row("kube, reused (`--sandbox-reuse`)", kube_warm, kube_cold),
        row(
            "kube, pool claim (`livesandbox warm --count 1` before each run)", kube_pool, kube_cold
        ),
    ]
    ready_ratio = []
    pairs = (
        ("local", local_warm, local_cold),
        ("docker", docker_warm, docker_cold),
        ("kube", kube_warm, kube_cold),
        ("kube pool", kube_pool, kube_cold),
    )
    for name, warm, cold in pairs:
        if warm and cold:
            ratio = median(warm, "ready_s") / median(cold, "ready_s")
            met = "met" if ratio <= 0.3 else "not met"
            ready_ratio.append(f"{name} {ratio:.2f}x ({met})")
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    body = (
        f"`python benchmarks/warm_start.py --runs {args.runs} --tests {args.tests}` ({load}): "
        "the suite of "
        "`peers.py` as real pytest runs, median of the runs; reused runs follow one warm-up run "
        "that leaves the sandbox warm. Ratio = time to first test against the cold run of the "
        "same backend (testcontainers: against local cold).\n\n"
        "| run | time to first test | `ready_s` | ratio |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nReused `ready_s` against cold `ready_s` (target <= 0.3x): "
        + (", ".join(ready_ratio) or "n/a")
        + ".\n\n"
        + pool_line(kube_pool, "(this machine's Python, with every pytest plugin installed here)")
        + pool_line(
            lean_pool, f"(`{args.pool_python}`: a virtualenv with only the plugin's kube extra)"
        )
        + "Database reset of a reused sandbox at 30 tables, 20 rows each dirtied (median of 7, "
        f"embedded PostgreSQL): the reset (rows of dirtied tables deleted) + seed reload "
        f"{resets['delete'] * 1000:.1f} ms, the same with the dirtied tables truncated "
        f"{resets['truncate'] * 1000:.1f} ms, clone from a template database "
        f"{resets['clone'] * 1000:.1f} ms. The default is the first (`postgres/reset.py` "
        "`DEFAULT_RESET`, the same server-side reset `db_reset` runs per test); the first two "
        "keep the app's connections, a clone ends them.\n"
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
    )
    print(body)
    print(f"written to {write_section('Warm sandboxes (reuse)', body)}")


if __name__ == "__main__":
    main()

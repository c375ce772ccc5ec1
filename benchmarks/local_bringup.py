"""Local sandbox bring-up and per-test DB isolation cost, against the naive peers.

    python benchmarks/local_bringup.py [--runs 5]

Bring-up: ``Sandbox(--sandbox=local, demo app)`` from start to ready, against the peer most
hand-written conftest files use: a fresh ``initdb`` + ``postgres`` start + first connection.
Isolation: ``live_db``'s rolled-back transaction per test, against a new connection per test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.postgres.embedded import (
    PostgresBinaries,
    PostgresServer,
    free_port,
    unprivileged_user,
)
from pytest_livesandbox.postgres.isolation import TransactionJanitor
from pytest_livesandbox.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent


def config() -> SandboxConfig:
    app = f"{sys.executable} {REPO / 'examples/demo_app/app.py'}"
    return SandboxConfig.from_sources(
        cli={"backend": "local", "app_cmd": app, "health_path": "/readyz"},
        env={},
        ini={},
        rootdir=REPO,
    )


def bring_up(runs: int) -> tuple[list[float], list[float], list[float]]:
    ready, db_only, teardown = [], [], []
    Sandbox(config()).__enter__().stop()  # warm the template cache once, like any second run
    for _ in range(runs):
        began = time.perf_counter()
        sandbox = Sandbox(config())
        sandbox.start()
        ready.append(time.perf_counter() - began)
        db_only.append(sandbox.info.timings["db_ready_s"])
        began = time.perf_counter()
        sandbox.stop()
        teardown.append(time.perf_counter() - began)
    return ready, db_only, teardown


def naive_initdb(runs: int) -> list[float]:
    runas = unprivileged_user()
    binaries = PostgresBinaries.locate(None).usable_by(runas)
    results = []
    for _ in range(runs):
        holder = Path(tempfile.mkdtemp(dir="/var/tmp" if runas else None))
        holder.chmod(0o755)
        datadir = holder / "data"
        datadir.mkdir(mode=0o700)
        if runas:
            shutil.chown(datadir, runas.uid, runas.gid)
        began = time.perf_counter()
        import subprocess

        subprocess.run(
            [
                str(binaries.tool("initdb")),
                "-D",
                str(datadir),
                "-U",
                "livesandbox",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=runas.uid if runas else None,
            group=runas.gid if runas else None,
        )
        server = PostgresServer(binaries, datadir=datadir, port=free_port(), runas=runas)
        server.start(timeout=30)
        with server.admin_connection("postgres") as conn:
            conn.execute("select 1")
        results.append(time.perf_counter() - began)
        server.stop()
        shutil.rmtree(holder)
    return results


def isolation(dsn: str, tests: int) -> tuple[float, float]:
    janitor = TransactionJanitor(dsn)
    janitor.connection()
    began = time.perf_counter()
    for _ in range(tests):
        with janitor.transaction() as conn:
            conn.execute("select 1")
    rollback = (time.perf_counter() - began) / tests
    janitor.close()
    began = time.perf_counter()
    for _ in range(tests):
        with psycopg.connect(dsn) as conn:
            conn.execute("select 1")
    reconnect = (time.perf_counter() - began) / tests
    return rollback, reconnect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=500)
    args = parser.parse_args()
    ready, db_only, teardown = bring_up(args.runs)
    naive = naive_initdb(args.runs)
    with Sandbox(config()) as sandbox:
        assert sandbox.info.db is not None
        rollback, reconnect = isolation(sandbox.info.db.dsn, args.tests)
    med = statistics.median
    body = f"""
`python benchmarks/local_bringup.py --runs {args.runs}` (median of {args.runs}; isolation over
{args.tests} simulated tests; select 1 inside each):

| what | pytest-livesandbox | peer | ratio |
|---|---|---|---|
| sandbox ready (PostgreSQL + demo app answering /readyz) | {med(ready):.3f} s | - | target <= 0.6 s |
| PostgreSQL ready (template copy + start + passwords) | {med(db_only):.3f} s | {med(naive):.3f} s (fresh initdb + start + connect) | {med(naive) / med(db_only):.1f}x faster |
| per-test isolation (`live_db`: rolled-back transaction) | {rollback * 1000:.3f} ms | {reconnect * 1000:.3f} ms (new connection per test) | {reconnect / rollback:.1f}x faster |
| teardown (app + PostgreSQL stopped, data removed) | {med(teardown):.3f} s | - | - |
"""
    print(body)
    print(f"written to {write_section('Local bring-up', body)}")


if __name__ == "__main__":
    main()

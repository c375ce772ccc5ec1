"""Cost of a test's database role and of a clock fault on the local backend, against peers.

    python benchmarks/auth.py [--roles 200] [--clocks 200]

Role: ``live_db_role``'s work per test (create + grant + rls setting + connect as it + a query +
drop), against the peer a hand-written fixture pays anyway: a plain psycopg connect as the
app's role + the same query + close. Clock: ``chaos.clock(offset="+1h")`` applied and removed
(the control-file write, ledger entry, removal), and the same until the running app *reports*
the moved time on ``/time`` (one HTTP request each way), against the peer way to give an app
another clock: restart it with a new ``FAKETIME`` (an ``evict_pod`` until it answers again).
Targets: <= 10 ms per role, <= 50 ms per clock change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from pytest_livesandbox.backends.local.chaos import LocalChaos
from pytest_livesandbox.chaos.markers import plan_from_markers
from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.postgres.grants import RoleMaker
from pytest_livesandbox.sandbox import Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent


def config() -> SandboxConfig:
    app = f"{sys.executable} {REPO / 'examples/demo_app/app.py'}"
    return SandboxConfig.from_sources(
        cli={"backend": "local", "app_cmd": app, "health_path": "/readyz", "fake_clock": "on"},
        env={},
        ini={},
        rootdir=REPO,
    )


def timed(runs: int, once: Callable[[], None]) -> list[float]:
    once()  # warm-up
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        once()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=200)
    parser.add_argument("--clocks", type=int, default=200)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    with Sandbox(config()) as sandbox:
        info = sandbox.info
        assert info.db is not None

        # live_db_role shares one admin connection per session, as here.
        admin = psycopg.connect(info.db.url(admin=True), autocommit=True)

        def role() -> None:
            maker = RoleMaker(info.db, info.db.dbname, label="bench", admin=admin)  # type: ignore[arg-type]
            made = maker.make("bench", grants={"items": "SELECT"}, rls_settings={"app.t": "a"})
            assert made.conn is not None
            made.conn.execute("SELECT count(*) FROM items").fetchone()
            assert maker.drop_all() == []

        def ddl_only() -> None:  # the role's own cost: no login
            maker = RoleMaker(info.db, info.db.dbname, label="bench", admin=admin)  # type: ignore[arg-type]
            maker.make(
                "bench", grants={"items": "SELECT"}, rls_settings={"app.t": "a"}, login=False
            )
            assert maker.drop_all() == []

        def plain() -> None:
            with psycopg.connect(info.db.dsn, autocommit=True) as conn:  # type: ignore[union-attr]
                conn.execute("SELECT count(*) FROM items").fetchone()

        roles = timed(args.roles, role)
        peers = timed(args.roles, plain)
        ddl = timed(args.roles, ddl_only)
        admin.close()

        driver = LocalChaos(info, owner="bench")
        (hour,) = plan_from_markers([("clock", (), {"offset": "+1h"})]).faults
        (evict,) = plan_from_markers([("evict_pod", (), {})]).faults
        http = httpx.Client(base_url=info.extra["app_direct_endpoint"])

        def app_offset() -> float:
            return float(http.get("/time").json()["now"]) - time.time()

        def clock() -> None:
            driver.apply(hour).remove()

        def clock_seen() -> None:
            with driver.apply(hour):
                assert app_offset() > 3500
            assert abs(app_offset()) < 5

        def restart() -> None:
            driver.apply(evict).remove()  # returns once the app answers its health path again

        clocks = timed(args.clocks, clock)
        seen = timed(args.clocks, clock_seen)
        restarts = timed(args.restarts, restart)
        assert driver.baseline_problems(10) == []
        http.close()

    role_ms, peer_ms = statistics.median(roles), statistics.median(peers)
    clock_ms, seen_ms = statistics.median(clocks), statistics.median(seen)
    restart_ms = statistics.median(restarts)
    load = os.getloadavg()[0]
    body = f"""
`python benchmarks/auth.py --roles {args.roles} --clocks {args.clocks}` (median, p90 in
brackets; local sandbox with the demo app under libfaketime; load average {load:.1f} on
{os.cpu_count()} cores at the end: a shared machine, compare the ratios).

| what | pytest-livesandbox | peer | ratio | target | met |
|---|---|---|---|---|---|
| `live_db_role` per test: create + grant + setting + connect + query + drop | {role_ms:.2f} ms ({p(roles, 0.9):.2f}) | {peer_ms:.2f} ms ({p(peers, 0.9):.2f}): plain psycopg connect as the app role + query + close | {role_ms / peer_ms:.1f}x | <= 10 ms | {"yes" if role_ms <= 10 else "no"} |
| of which the DDL (the same role with `login=False`: create, grant, setting, drop; 2 round trips) | {statistics.median(ddl):.2f} ms ({p(ddl, 0.9):.2f}) | | | | |
| clock fault apply + remove (`chaos.clock(offset="+1h")`) | {clock_ms:.3f} ms ({p(clocks, 0.9):.3f}) | {restart_ms:.0f} ms: restart the app under a new `FAKETIME` (evict until Ready) | {restart_ms / clock_ms:.0f}x faster | <= 50 ms | {"yes" if clock_ms <= 50 else "no"} |
| the same, until the app reports it (apply, GET /time, remove, GET /time) | {seen_ms:.2f} ms ({p(seen, 0.9):.2f}) | {restart_ms:.0f} ms | {restart_ms / seen_ms:.0f}x faster | <= 50 ms | {"yes" if seen_ms <= 50 else "no"} |

A role costs its DDL (one round trip for create + grants + settings, one for the drop, on the
admin connection every test's roles share) and one login as the role; its random one-test password is stored as a SCRAM verifier with 16
iterations instead of PostgreSQL's 4096, which would cost ~8 ms at `CREATE ROLE` and again at
login. The peer's login as the app role pays the 4096 iterations. The clock fault is
a file replacement the app's libfaketime reads on its next clock call.
"""
    print(body)
    write_section("Roles and the app's clock", body)


if __name__ == "__main__":
    main()

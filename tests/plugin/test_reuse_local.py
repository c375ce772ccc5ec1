"""Leases and warm sandboxes (``--sandbox-reuse``) on the local backend, through real runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_livesandbox.info import default_owner
from tests.conftest import DEMO_APP, DEMO_APP_CMD, IsolatedState

OPTS = ("-p", "no:cacheprovider", "--sandbox=local", "--sandbox-health-path=/readyz")
REUSE = (*OPTS, f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-reuse")

# Writes a committed row through the app, and checks the database is clean before.
CLEAN_DB_TEST = """
import json, time

PAUSE = 0

def test_clean_then_write(livesandbox, live_http, live_db):
    assert live_db.execute("select count(*) from items").fetchone()[0] == 0
    assert live_http.post("/items", json={"name": "only-once"}).status_code == 201
    time.sleep(PAUSE)
    with open("ids.txt", "a") as out:
        out.write(json.dumps({"id": livesandbox.info.id,
                              "reused": livesandbox.info.extra.get("reused")}) + "\\n")
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def gc(*extra: str) -> subprocess.CompletedProcess[str]:
    return cli("gc", "--backend", "local", "--owner", default_owner(), *extra)


def runs(pytester: pytest.Pytester) -> list[dict[str, object]]:
    lines = (pytester.path / "ids.txt").read_text().splitlines()
    return [json.loads(line) for line in lines]


def run_started(report: Path) -> dict[str, object]:
    event: dict[str, object] = json.loads(report.read_text().splitlines()[0])
    assert event["event"] == "run_started"
    return event


def remove_warm(isolated_state: IsolatedState) -> None:
    for folder in isolated_state.sandboxes():
        down = cli("down", folder.name)
        assert down.returncode == 0, down.stderr
    isolated_state.assert_clean()
    assert list(isolated_state.path.glob("*.lease.json")) == []


def test_second_run_reuses_the_warm_sandbox_with_a_clean_database(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    first = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r1.jsonl")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*kept warm (reuse key *"])
    ls = cli("ls", "--backend", "local")
    assert " warm " in ls.stdout and "in 30m" in ls.stdout, ls.stdout
    second = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r2.jsonl")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*(local) reused, ready in *"])
    one, two = runs(pytester)
    assert one == {"id": one["id"], "reused": False}
    assert two == {"id": one["id"], "reused": True}
    cold, warm = run_started(pytester.path / "r1.jsonl"), run_started(pytester.path / "r2.jsonl")
    assert cold["reused"] is False and warm["reused"] is True
    timings = warm["sandbox"]["timings"]  # type: ignore[index]
    assert set(timings) == {"attach_s", "reset_s", "ready_s"}
    assert len(isolated_state.sandboxes()) == 1
    remove_warm(isolated_state)


def test_a_changed_app_command_does_not_reuse(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    pytester.runpytest_subprocess(*REUSE).assert_outcomes(passed=1)
    changed = (*OPTS, f"--sandbox-app-cmd={sys.executable} -u {DEMO_APP}", "--sandbox-reuse")
    pytester.runpytest_subprocess(*changed).assert_outcomes(passed=1)
    one, two = runs(pytester)
    assert one["id"] != two["id"] and two["reused"] is False
    keys = set(re.findall(r" ([0-9a-f]{16}) ", cli("ls", "--backend", "local").stdout))
    assert len(keys) == 2, keys
    remove_warm(isolated_state)


def two_runs_at_once(pytester: pytest.Pytester, *options: str, timeout: float = 120) -> None:
    """One run leaves a warm sandbox, then two start together: one claims it, one provisions."""
    pytester.makepyfile(test_clean=CLEAN_DB_TEST.replace("PAUSE = 0", "PAUSE = 3"))
    pytester.runpytest_subprocess(*options).assert_outcomes(passed=1)  # one warm sandbox
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", *options],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out.decode()
    _, a, b = runs(pytester)
    assert a["id"] != b["id"]
    assert sorted([a["reused"], b["reused"]]) == [False, True]


def test_two_runs_at_once_get_two_sandboxes(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    two_runs_at_once(pytester, *REUSE)
    assert len(isolated_state.sandboxes()) == 2
    remove_warm(isolated_state)


def start_hanging(pytester: pytest.Pytester, *options: str) -> subprocess.Popen[bytes]:
    (pytester.path / "started").unlink(missing_ok=True)
    pytester.makepyfile(
        test_hang="""
        import time

        def test_hang(live_http):
            live_http.post("/items", json={"name": "left-behind"})
            open("started", "w").close()
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *options, "test_hang.py"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pytester.path / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc


def test_kill_9_during_a_reused_run_is_repaired_by_the_next(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    pytester.runpytest_subprocess(*REUSE, "test_clean.py").assert_outcomes(passed=1)
    proc = start_hanging(pytester, *REUSE)  # claims the warm one, dirties the database
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "orphaned" in cli("ls", "--backend", "local").stdout
    again = pytester.runpytest_subprocess(*REUSE, "test_clean.py")
    again.assert_outcomes(passed=1)  # the database is clean again
    one, two = runs(pytester)
    assert two == {"id": one["id"], "reused": True}
    remove_warm(isolated_state)


def test_a_lapsed_lease_is_reaped_by_gc_within_seconds(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    result = pytester.runpytest_subprocess(*REUSE, "--sandbox-reuse-idle=10s")
    result.assert_outcomes(passed=1)
    lapses_at = time.time() + 10  # a little after it really lapses (the run wrote it earlier)
    assert "0 sandbox(es) removed" in gc().stdout  # still warm: its lease holds
    time.sleep(max(0.0, lapses_at - time.time()))
    while isolated_state.sandboxes():
        assert time.time() - lapses_at < 10, "not reaped 10 s after its lease lapsed"
        out = gc().stdout
        time.sleep(0.2)
    assert "(local, lapsed)" in out and "1 sandbox(es) removed" in out
    isolated_state.assert_clean()
    assert list(isolated_state.path.glob("*.lease.json*")) == []


def test_the_next_run_reaps_lapsed_sandboxes_in_the_background(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    pytester.runpytest_subprocess(*REUSE, "--sandbox-reuse-idle=1s").assert_outcomes(passed=1)
    (lapsed,) = isolated_state.sandboxes()
    time.sleep(1.5)
    plain = pytester.runpytest_subprocess(*OPTS, f"--sandbox-app-cmd={DEMO_APP_CMD}")
    plain.assert_outcomes(passed=1)
    assert not lapsed.exists()
    isolated_state.assert_clean()


def test_a_kill_9_run_leaves_a_lease_that_lapses(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    proc = start_hanging(pytester, *OPTS, f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-lease=1s")
    (lease,) = isolated_state.path.glob("*.lease.json")
    held = json.loads(lease.read_text())
    assert held["state"] == "held" and held["expires_at"] > time.time()
    time.sleep(1.0)
    assert json.loads(lease.read_text())["expires_at"] > held["expires_at"]  # renewed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.2)
    ls = cli("ls", "--backend", "local").stdout
    assert "orphaned" in ls and " ago " in ls, ls
    assert "1 sandbox(es) removed" in gc().stdout
    isolated_state.assert_clean()


def test_warm_pool_is_filled_claimed_and_topped_up(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    warm = cli("warm", "--count", "2", "--rootdir", str(pytester.path), "--", *REUSE[2:])
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.count(" (local)\n") == 2 and "2 warm sandbox(es)" in warm.stdout
    pooled = {p.name for p in isolated_state.sandboxes()}
    run = pytester.runpytest_subprocess(*REUSE, "--sandbox-reuse-pool=2")
    run.assert_outcomes(passed=1)
    (claimed,) = runs(pytester)
    assert claimed["reused"] is True and claimed["id"] in pooled
    deadline = time.monotonic() + 90  # the replacement is provisioned in the background
    while cli("ls", "--backend", "local").stdout.count(" warm ") < 3:
        assert time.monotonic() < deadline, cli("ls").stdout
        time.sleep(0.5)
    time.sleep(0.5)
    assert len(isolated_state.sandboxes()) == 3  # two waiting plus the one the run gave back
    (isolated_state.path / "warm-pool.log").unlink()
    remove_warm(isolated_state)


SEED_MIGRATION = """
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("create table if not exists seeds (id serial primary key, v text)")
    conn.execute("insert into seeds (v) select 'seed' where not exists (select 1 from seeds)")
"""


def test_per_test_db_reset_never_empties_the_reuse_snapshot(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    # One reset module serves both: db_reset after each test must leave the reuse snapshot
    # (schema livesandbox_snapshot) alone, so the next run still gets its seed row back.
    pytester.makepyfile(migrate=SEED_MIGRATION)
    pytester.makepyfile(
        test_seed="""
        def test_seed_row_is_there(live_http, live_db):
            assert live_db.execute("select v from seeds").fetchall() == [("seed",)]
            assert live_http.post("/items", json={"name": "dirty"}).status_code == 201
        """
    )
    options = (
        *REUSE,
        f"--sandbox-migrate-cmd={sys.executable} migrate.py",
        "--sandbox-db-reset=truncate",
        "--sandbox-db-reset-keep=seeds",
    )
    for _ in range(2):
        pytester.runpytest_subprocess(*options).assert_outcomes(passed=1)
    remove_warm(isolated_state)

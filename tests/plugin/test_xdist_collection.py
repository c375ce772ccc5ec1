"""Under xdist the sandbox is made only after a worker collected cleanly: real runs via pytester.

The controller provisions when the first worker finished collecting without errors; a typo in a
marker is a collection error that stops the run before any sandbox exists. Each test watches the
private state folder while the inner run goes, so a sandbox made and torn down again would show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import DEMO_APP, IsolatedState

GOOD = """
import pytest

@pytest.mark.db_connections(max=5)
def test_chaos(live_http):
    assert live_http.get("/healthz").status_code == 200

@pytest.mark.parametrize("n", range(4))
def test_api(live_http, n):
    assert live_http.get("/healthz").status_code == 200
"""

BAD = """
import pytest

@pytest.mark.latency(ms="300")
def test_typo(live_http):
    pass
"""


def run_watched(
    pytester: pytest.Pytester, state: IsolatedState, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run pytest -n 2 on a local sandbox; also return every sandbox folder and every
    PostgreSQL process of the run seen while it ran (``postgres`` among the folder names)."""
    starts = pytester.path / "app-starts.txt"
    app = f"sh -c 'echo started >> {starts}; exec {sys.executable} {DEMO_APP}'"
    cmd = [
        sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "--sandbox=local",
        f"--sandbox-app-cmd={app}", "--sandbox-health-path=/readyz", "--sandbox-report=r.jsonl",
        *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: set[str] = set()
    while proc.poll() is None:
        seen.update(p.name for p in state.sandboxes())
        for child in state.processes():
            try:
                if child.name() == "postgres":
                    seen.add("postgres")
            except psutil.Error:
                pass
        time.sleep(0.01)
    out = proc.stdout.read() if proc.stdout else ""
    return subprocess.CompletedProcess(cmd, proc.returncode, out), sorted(seen)


def app_starts(pytester: pytest.Pytester) -> int:
    starts = pytester.path / "app-starts.txt"
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def events(pytester: pytest.Pytester) -> list[dict[str, object]]:
    return [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]


def handoffs(state: IsolatedState) -> list[Path]:
    return sorted(state.path.glob(".handoff-*")) if state.path.exists() else []


def test_a_bad_marker_under_xdist_stops_the_run_before_any_sandbox(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_good=GOOD, test_bad=BAD)
    began = time.monotonic()
    result, seen = run_watched(pytester, isolated_state)
    took = time.monotonic() - began
    assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout
    for line in (
        "ERROR collecting test_bad.py",
        "pytest-livesandbox: bad markers:",
        "test_bad.py::test_typo: @latency: ms='300' must be a number",
        "Interrupted: 1 error during collection",
    ):
        assert line in result.stdout, result.stdout
    assert " passed" not in result.stdout and "PASSED" not in result.stdout
    # Nothing was made at all: no sandbox folder ever appeared, no PostgreSQL process, the app
    # never started, no handoff file.
    assert seen == []
    assert app_starts(pytester) == 0
    assert [e["event"] for e in events(pytester)] == ["run_finished"]
    assert "backend local: no sandbox made: collection errors stopped the run" in result.stdout
    assert handoffs(isolated_state) == []
    isolated_state.assert_clean()
    print(f"bad-marker xdist run: {took:.2f}s wall")


def test_a_clean_xdist_collection_provisions_once(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_good=GOOD)
    result, seen = run_watched(pytester, isolated_state)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "5 passed" in result.stdout
    assert len(seen) == 2 and "postgres" in seen and app_starts(pytester) == 1
    found = events(pytester)
    assert [e["event"] for e in found].count("run_started") == 1
    workers = {e["worker"] for e in found if e["event"] == "test_finished"}
    assert workers == {"gw0", "gw1"}
    assert handoffs(isolated_state) == []
    isolated_state.assert_clean()


def test_continue_on_collection_errors_runs_the_rest_against_one_sandbox(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_good=GOOD, test_bad=BAD)
    result, seen = run_watched(pytester, isolated_state, "--continue-on-collection-errors")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "5 passed, 1 error" in result.stdout, result.stdout
    assert len(seen) == 2 and "postgres" in seen and app_starts(pytester) == 1
    assert handoffs(isolated_state) == []
    isolated_state.assert_clean()


def test_a_provisioning_error_reaches_every_worker_once(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_good=GOOD)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--sandbox=local",
        "--sandbox-app-cmd=no-such-app-xyz", "--sandbox-health-path=/readyz",
    )  # fmt: skip
    result.assert_outcomes(errors=5)
    out = result.stdout.str()
    # In full once per run (not once per worker); the other tests point at it.
    assert out.count("could not start the app command: no-such-app-xyz: not found on PATH") == 1
    assert out.count("sandbox could not be provisioned (AppCrashed): the error is shown") == 4
    assert "has not handed over" not in out
    assert handoffs(isolated_state) == []
    isolated_state.assert_clean()


def test_ctrl_c_while_the_controller_provisions_leaves_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_good=GOOD)
    starts = pytester.path / "app-starts.txt"
    app = f"sh -c 'echo started >> {starts}; sleep 60; exec {sys.executable} {DEMO_APP}'"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
            "--sandbox=local", f"--sandbox-app-cmd={app}", "--sandbox-health-path=/readyz",
            "--sandbox-startup-timeout=90s",
        ],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not starts.exists():  # PostgreSQL is up, the app is starting: mid-provisioning
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the app never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert " passed" not in out, out
    assert handoffs(isolated_state) == []
    isolated_state.assert_clean()


def test_without_a_sandbox_xdist_runs_past_collection_errors_as_usual(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        test_plain="def test_a():\n    pass\n", test_broken="import no_such_module_xyz\n"
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--sandbox=none")
    result.assert_outcomes(passed=1, errors=1)
    assert "Interrupted" not in result.stdout.str()
    isolated_state.assert_clean()

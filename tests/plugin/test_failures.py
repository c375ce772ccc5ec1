"""Failures that tell the truth: teardown under signals, dead owners, components dying mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DEMO_APP_CMD, IsolatedState

# An app that ignores SIGTERM (noting that it came): stopping it takes the full grace period
# unless hurried.
STUBBORN_APP = """
import os, signal
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, lambda *_: open("app-got-sigterm", "w").close())

class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ok).serve_forever()
"""


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_until(pytester: pytest.Pytester, flag: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (pytester.path / flag).exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc


def test_signals_during_teardown_never_abandon_it(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        stubborn=STUBBORN_APP,
        test_x="import time\n\ndef test_hang(live_url):\n"
        "    open('started', 'w').close()\n    time.sleep(120)\n",
    )
    proc = run_until(
        pytester, "started", "--sandbox=local", f"--sandbox-app-cmd={sys.executable} stubborn.py"
    )
    proc.send_signal(signal.SIGTERM)  # the run stops; teardown starts (the app ignores SIGTERM)
    deadline = time.monotonic() + 60
    while not (pytester.path / "app-got-sigterm").exists():  # teardown is stopping the app
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # during teardown: noted, not raised
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # the second one hurries the kill, still finishes
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert "SIGINT during teardown; finishing it" in text, text
    assert "SIGTERM during teardown; finishing it (killing what is left now)" in text, text
    assert "Traceback" not in text, text
    isolated_state.assert_clean()


def test_gc_right_after_kill_9_sees_a_dead_owner(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        "import time\n\ndef test_hang(live_url):\n"
        "    open('started', 'w').close()\n    time.sleep(120)\n"
    )
    proc = run_until(pytester, "started", "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}")
    proc.send_signal(signal.SIGKILL)
    # Not reaped yet (a zombie, as under a shell that has not waited): gc must see it dead now.
    time.sleep(0.2)
    gc = subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", "gc", "--backend", "local"],
        capture_output=True,
        text=True,
    )
    proc.wait()
    assert "(local, orphaned)" in gc.stdout and "1 sandbox(es) removed" in gc.stdout, gc.stdout
    isolated_state.assert_clean()


def test_live_db_after_kill_db_and_down_for_honoured(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_before(live_db):
            assert live_db.execute("select 1").fetchone() == (1,)

        @pytest.mark.kill_db(when="before", down_for="2s")
        def test_outage(live_http):
            pass  # the body ends at once; the database stays down for 2s all the same

        def test_after(live_db):
            assert live_db.execute("select 1").fetchone() == (1,)
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
        "--sandbox-health-path=/readyz",
        "--sandbox-report=r.jsonl",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=3)
    outage = next(
        e for e in read_events(pytester.path / "r.jsonl") if e.get("nodeid", "").endswith("outage")
    )
    (fault,) = outage["chaos"]
    assert fault["kind"] == "kill_db" and fault["down_s"] >= 2.0, fault
    isolated_state.assert_clean()


DEATHS = {
    "postgres": (
        "os.kill(info.extra['postgres_pid'], signal.SIGQUIT)",
        "*SandboxDied: PostgreSQL of sandbox * is not running.*",
    ),
    "proxy": (
        "os.kill(info.extra['fault_proxy']['pid'], signal.SIGKILL)",
        "*SandboxDied: the fault proxy of sandbox * (pid *) exited.*",
    ),
    "supervisor": (
        "os.kill(info.extra['app_pid'], signal.SIGKILL)",
        "*SandboxDied: the app of sandbox * is gone: its supervisor (pid *) exited*",
    ),
}


@pytest.mark.parametrize("what", sorted(DEATHS))
def test_component_killed_from_outside_errors_the_next_test(
    pytester: pytest.Pytester, isolated_state: IsolatedState, what: str
) -> None:
    kill, expected = DEATHS[what]
    pytester.makepyfile(
        f"""
        import os, signal, time

        def test_kill(livesandbox):
            info = livesandbox.info
            {kill}
            time.sleep(0.5)

        def test_next(live_http):
            live_http.get("/healthz")
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([expected, "*Hint: something outside the test run stopped it*"])
    isolated_state.assert_clean()


def test_app_restart_outside_chaos_is_reported(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import json, os, signal, time
        from pathlib import Path

        def test_crash(livesandbox, live_http):
            state = Path(livesandbox.info.workdir) / "app.supervisor.json"
            os.kill(json.loads(state.read_text())["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 20
            while json.loads(state.read_text())["restarts"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        def test_quiet(live_http):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
        "--sandbox-report=r.jsonl",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["the app restarted 1x during test_app_restart_outside_chaos_is_reported.py::test_crash*"]
    )
    finished = [e for e in read_events(pytester.path / "r.jsonl") if e["event"] == "test_finished"]
    assert [e.get("app_restarts") for e in finished] == [1, None]
    isolated_state.assert_clean()


def test_missing_app_binary_is_not_found_once_per_run(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        "def test_a(live_url):\n    pass\n\ndef test_b(live_url):\n    pass\n\n"
        "def test_c(live_url):\n    pass\n"
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", "--sandbox-app-cmd=no-such-app-xyz --title 'my app'", "-p", "no:randomly"
    )
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    full = (
        "AppCrashed: could not start the app command: no-such-app-xyz: not found on PATH "
        "(command: no-such-app-xyz --title 'my app'). Fix --sandbox-app-cmd"
    )
    assert out.count(full) == 1, out
    first = "test_missing_app_binary_is_not_found_once_per_run.py::test_a"
    pointer = (
        f"sandbox could not be provisioned (AppCrashed): the error is shown in full at {first}"
    )
    assert out.count(pointer) == 2, out
    result.stdout.fnmatch_lines(["sandbox could not be provisioned (local): AppCrashed (shown*"])
    assert "supervisor.py" not in out
    isolated_state.assert_clean()


def test_last_output_has_no_probe_lines(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        chatty="""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
print("app says: waiting for the cache", flush=True)

class NotYet(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), NotYet).serve_forever()
""",
        test_x="def test_a(live_url):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={sys.executable} chatty.py",
        "--sandbox-startup-timeout=1.5s",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Last probe: HTTP 503*", "Last output:", "app says: waiting*"])
    assert "GET /healthz" not in result.stdout.str()
    isolated_state.assert_clean()

"""The plugin end to end through pytester: real PostgreSQL, real app process, real HTTP."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DEMO_APP_CMD, REPO, IsolatedState


def copy_local_example(pytester: pytest.Pytester) -> None:
    shutil.copytree(REPO / "conftest_examples" / "local", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    # The example points at the demo app relative to the repo; pytester runs elsewhere.
    ini.write_text(
        ini.read_text().replace(
            "{python} ../../examples/demo_app/app.py", DEMO_APP_CMD.replace("\\", "/")
        )
    )


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_example_suite_passes_and_leaves_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    copy_local_example(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=7)
    result.stdout.re_match_lines([r".*sandbox \w+ \(local\) ready in [\d.]+s, torn down in.*"])
    events = read_events(pytester.path / "r.jsonl")
    assert events[0]["event"] == "run_started"
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["counts"] == {"passed": 7}
    finished = [e for e in events if e["event"] == "test_finished"]
    assert len(finished) == 7
    assert {e["sandbox_id"] for e in events} == {events[0]["sandbox"]["id"]}
    for event in finished:
        assert event["schema"] == 1
        assert event["duration"] >= event["call"] >= 0
        assert set(event) >= {"nodeid", "outcome", "setup", "call", "teardown", "worker"}
    isolated_state.assert_clean()


def test_failures_are_reported_with_their_reason(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        def test_wrong_status(live_http):
            assert live_http.get("/items/999999").status_code == 200

        def test_ok(live_http):
            assert live_http.get("/healthz").status_code == 200
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=1, failed=1)
    finished = {
        e["nodeid"].split("::")[1]: e
        for e in read_events(pytester.path / "r.jsonl")
        if e["event"] == "test_finished"
    }
    assert finished["test_wrong_status"]["outcome"] == "failed"
    assert "404" in finished["test_wrong_status"]["message"]
    assert finished["test_ok"]["outcome"] == "passed"
    isolated_state.assert_clean()


def test_crashing_app_gives_one_clear_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        crash="import sys\nprint('config error: SECRET_KEY is not set', flush=True)\nsys.exit(3)\n",
        test_x="def test_a(live_url):\n    pass\n\ndef test_b(live_url):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={sys.executable} crash.py"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*AppCrashed: the app exited with code 3 during start-up*", "*SECRET_KEY is not set*"]
    )
    assert "Traceback" not in result.stdout.str()
    isolated_state.assert_clean()


def test_app_that_never_gets_healthy_times_out_with_hint(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        test_x="def test_a(live_url):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
        "--sandbox-health-path=/does-not-exist",
        "--sandbox-startup-timeout=1.5s",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*StartupTimeout: the app (http://127.0.0.1:*/does-not-exist) was not ready after 1.5s*"]
    )
    result.stdout.fnmatch_lines(["*Last probe: HTTP 404*", "*--sandbox-health-path*"])
    isolated_state.assert_clean()


@pytest.mark.parametrize(
    ("args", "ini", "env", "expected"),
    [
        (["--sandbox=bogus"], "", {}, "*--sandbox (from --sandbox): 'bogus' is not one of none,*"),
        (
            ["--sandbox=local", "--sandbox-startup-timeout=-5"],
            "",
            {},
            "*--sandbox-startup-timeout (from --sandbox-startup-timeout): '-5' is not a durat*",
        ),
        (
            [],
            "livesandbox_startup_timeout = soon",
            {},
            "*--sandbox-startup-timeout (from ini livesandbox_startup_timeout)*30s, 500ms or 2m*",
        ),
        (
            [],
            "",
            {"LIVESANDBOX_KEEP": "perhaps"},
            "*--sandbox-keep (from LIVESANDBOX_KEEP): 'perhaps' is not a boolean*",
        ),
    ],
)
def test_bad_configuration_is_a_usage_error(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()
    isolated_state.assert_clean()


def test_bad_marker_is_reported_before_anything_runs(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.db_isolation("tables")
        def test_a(live_db):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--sandbox=local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_bad_marker_is_reported_before_anything_runs.py::test_a: db_isolation*"]
    )
    isolated_state.assert_clean()


def test_sandbox_none_leaves_pytest_untouched(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n\ndef test_live(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=none", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no sandbox for this run: start pytest with --sandbox=local*"])
    assert "- livesandbox -" not in result.stdout.str()
    # In CI a live test that cannot run is a failure, never a silent skip.
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--sandbox=none")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*live tests may not skip when CI=true*"])
    isolated_state.assert_clean()


def test_secrets_never_reach_output_or_reports(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        def test_leak_probe(live_dsn, livesandbox, live_http):
            open("dsn.txt", "w").write(live_dsn)
            print(livesandbox.info)
            assert live_http.get("/readyz").status_code == 200
            assert False, "fail on purpose to get a failure report"
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-report=r.jsonl", "-s"
    )
    result.assert_outcomes(failed=1)
    password = (pytester.path / "dsn.txt").read_text().split(":")[2].split("@")[0]
    assert len(password) >= 16
    assert password not in result.stdout.str() + result.stderr.str()
    assert password not in (pytester.path / "r.jsonl").read_text()
    isolated_state.assert_clean()


def test_keep_then_down(pytester: pytest.Pytester, isolated_state: IsolatedState) -> None:
    pytester.makepyfile("def test_a(live_db):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=local", "--sandbox-keep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*kept running*", "*remove it with: livesandbox down *"])
    kept = isolated_state.sandboxes()
    assert len(kept) == 1 and isolated_state.processes()
    ls = subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", "ls", "--backend", "local"],
        capture_output=True,
        text=True,
    )
    assert kept[0].name in ls.stdout and "kept" in ls.stdout
    gc = subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", "gc", "--backend", "local"],
        capture_output=True,
        text=True,
    )
    assert "0 sandbox(es) removed" in gc.stdout  # kept on purpose: gc leaves it alone
    down = subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", "down", kept[0].name],
        capture_output=True,
        text=True,
    )
    assert down.returncode == 0, down.stderr
    isolated_state.assert_clean()


def start_hanging_run(pytester: pytest.Pytester) -> subprocess.Popen[bytes]:
    """A pytest run against a live sandbox, returned once its only test hangs in its body."""
    pytester.makepyfile(
        """
        import time

        def test_hang(live_url):
            open("started", "w").close()
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pytester.path / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc


def test_kill_9_leaves_an_orphan_that_gc_reaps(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    proc = start_hanging_run(pytester)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(isolated_state.sandboxes()) == 1 and isolated_state.processes()
    gc = subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", "gc", "--backend", "local"],
        capture_output=True,
        text=True,
    )
    assert "(local, orphaned)" in gc.stdout and "1 sandbox(es) removed" in gc.stdout
    isolated_state.assert_clean()


def test_ctrl_c_during_provisioning_cleans_up(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        slow_app="import time\nopen('app-started', 'w').close()\ntime.sleep(60)\n",
        test_x="def test_a(live_url):\n    pass\n",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--sandbox=local",
            f"--sandbox-app-cmd={sys.executable} slow_app.py",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (pytester.path / "app-started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    isolated_state.assert_clean()


def test_sigterm_of_the_run_still_tears_down(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    proc = start_hanging_run(pytester)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    isolated_state.assert_clean()


def test_async_client_factory_and_isolation_fixtures(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import asyncio

        import psycopg
        import pytest

        def test_async_client(live_async_http):
            async def probe():
                async with live_async_http as client:
                    return (await client.get("/healthz")).status_code
            assert asyncio.run(probe()) == 200

        def test_factory_databases_are_separate_and_commit(live_db_factory):
            first, second = live_db_factory(), live_db_factory()
            assert first.name != second.name
            with first.connect(autocommit=True) as conn:
                conn.execute("insert into items(name) values ('only-in-first')")
            with second.connect() as conn:
                assert conn.execute("select count(*) from items").fetchone() == (0,)

        def test_commit_inside_live_db_is_refused(live_db):
            with pytest.raises(psycopg.ProgrammingError):
                live_db.commit()

        def test_app_database_untouched_by_factory(live_db):
            row = live_db.execute(
                "select count(*) from items where name = 'only-in-first'"
            ).fetchone()
            assert row == (0,)
        """
    )
    result = pytester.runpytest_subprocess("--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}")
    result.assert_outcomes(passed=4)
    isolated_state.assert_clean()


def test_xdist_ci_example_shares_one_sandbox(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    shutil.copytree(REPO / "conftest_examples" / "xdist_ci", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    ini.write_text(ini.read_text().replace("{python} ../../examples/demo_app/app.py", DEMO_APP_CMD))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=13)
    events = read_events(pytester.path / "reports" / "run.jsonl")
    assert sum(e["event"] == "run_started" for e in events) == 1
    finished = [e for e in events if e["event"] == "test_finished"]
    assert len(finished) == 13
    assert {e["sandbox_id"] for e in finished} == {events[0]["sandbox"]["id"]}
    assert {e["worker"] for e in finished} == {"gw0", "gw1"}
    isolated_state.assert_clean()

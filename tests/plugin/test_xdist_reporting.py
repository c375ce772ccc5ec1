"""One sandbox per xdist run, live reports, failure artifacts, leak GC: real runs via pytester."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import DEMO_APP_CMD, IsolatedState
from tests.receiver import receiving

CLI = [sys.executable, "-m", "pytest_livesandbox.cli"]
LOCAL = ["--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-health-path=/readyz"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``livesandbox ARGS`` on this test's local state only.

    Docker and kube sandboxes are machine- or cluster-wide: a ``gc --older-than 1s`` here must
    not reap what a docker or kube test on another xdist worker is using right now.
    """
    if args and args[0] in {"ls", "gc"}:
        args = (args[0], "--backend", "local", *args[1:])
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=check, env=env)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class _Cells(HTMLParser):
    """Text of every ``<td class="nodeid">`` and every link target."""

    def __init__(self) -> None:
        super().__init__()
        self.nodeids: list[str] = []
        self.links: list[str] = []
        self._in_nodeid = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self._in_nodeid = tag == "td" and found.get("class") == "nodeid"
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))

    def handle_data(self, data: str) -> None:
        if self._in_nodeid:
            self.nodeids.append(data)
            self._in_nodeid = False


def wait_for(paths: list[Path], proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {paths}"
        assert proc.poll() is None, "the run ended early"
        time.sleep(0.05)


INNER_SUITE = """
import os
import time

import pytest


@pytest.mark.parametrize("n", range(6))
def test_api(live_http, n):
    time.sleep(0.05)
    assert live_http.get(f"/items/{n}").status_code in (200, 404)


def test_fails_with_logs(live_http):
    time.sleep(0.2)
    assert live_http.get("/items/424242").status_code == 200


def test_leak_probe(live_dsn):
    open("dsn.txt", "w").write(live_dsn)
    print("connecting to", live_dsn)
    assert live_dsn == "", live_dsn


def test_worker_crash(live_url):
    time.sleep(0.3)
    os.kill(os.getpid(), 9)
"""


def test_xdist_run_shares_one_sandbox_and_reports_everywhere(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(test_suite=INNER_SUITE)
    with receiving() as receiver:
        result = pytester.runpytest_subprocess(
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            *LOCAL,
            "--sandbox-report=out/r.jsonl",
            "--sandbox-html=out/r.html",
            f"--sandbox-report-url={receiver.url}",
            "--junitxml=out/junit.xml",
            "-rA",
        )
        delivered = list(receiver.bodies)
    result.assert_outcomes(passed=6, failed=3)
    # A crashed worker still leaves nothing behind: teardown ran once, in the controller.
    isolated_state.assert_clean()

    out = pytester.path / "out"
    events = read_events(out / "r.jsonl")
    assert [e["event"] for e in events].count("run_started") == 1
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    sandbox_id = events[0]["sandbox"]["id"]
    assert {e["sandbox_id"] for e in events} == {sandbox_id}
    finished = {e["nodeid"].split("::")[1]: e for e in events if e["event"] == "test_finished"}
    assert len(finished) == 9
    assert {"gw0", "gw1"} <= {e["worker"] for e in finished.values()}
    assert finished["test_worker_crash"]["crashed"] is True
    assert finished["test_worker_crash"]["outcome"] == "failed"
    # No log offsets survive a dead worker: the controller attaches the logs' latest part.
    assert any(p.endswith("app.log") for p in finished["test_worker_crash"]["artifacts"])
    assert events[-1]["counts"] == {"passed": 6, "failed": 3}

    # The webhook saw every event, in the JSONL's order (so in order per worker too).
    assert delivered == events

    # Failure artifacts: the app's log lines of exactly that test's window, linked everywhere.
    logs = finished["test_fails_with_logs"]["artifacts"]
    app_log = next(Path(p) for p in logs if p.endswith("app.log"))
    assert app_log.is_relative_to(out / "r.jsonl.artifacts")
    assert "GET /items/424242 404" in app_log.read_text()
    assert "/items/0 " not in app_log.read_text()  # earlier tests are outside the window
    assert finished["test_api[0]"]["artifacts"] == []

    html = (out / "r.html").read_text()
    cells = _Cells()
    cells.feed(html)
    assert sorted(cells.nodeids) == sorted(e["nodeid"] for e in finished.values())
    assert os.path.relpath(app_log, out) in cells.links
    assert "gw1" in html and "crashed" in html

    junit = ET.parse(out / "junit.xml").getroot()
    for case in junit.iter("testcase"):
        if case.get("name") == "test_worker_crash":
            continue  # pytest's junitxml adds properties at teardown, which a crash never has
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props.get("livesandbox_sandbox_id") == sandbox_id, case.get("name")
        if case.get("name") == "test_fails_with_logs":
            assert str(app_log) in props["livesandbox_artifacts"]

    password = (pytester.path / "dsn.txt").read_text().split(":")[2].split("@")[0]
    assert len(password) >= 16
    everything = [result.stdout.str(), result.stderr.str(), json.dumps(delivered)]
    everything += [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert not [text for text in everything if password in text]
    # (pytest < 8.1 leaves the message out of the short summary line: match the E line too.)
    result.stdout.fnmatch_lines(["*postgresql://app:[*][*][*]@*"])


def test_database_isolation_holds_across_workers(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import os
        import time
        from pathlib import Path

        import pytest


        def barrier(me, other):
            Path(f"committed-{me}").write_text(os.environ["PYTEST_XDIST_WORKER"])
            deadline = time.monotonic() + 30
            while not Path(f"committed-{other}").exists():
                assert time.monotonic() < deadline, "the other worker never got there"
                time.sleep(0.02)


        @pytest.mark.db_isolation("database")
        def test_a(live_db):
            live_db.execute("insert into items(name) values ('row-of-a')")
            live_db.commit()
            barrier("a", "b")
            assert live_db.execute("select name from items").fetchall() == [("row-of-a",)]


        @pytest.mark.db_isolation("database")
        def test_b(live_db):
            live_db.execute("insert into items(name) values ('row-of-b')")
            live_db.commit()
            barrier("b", "a")
            assert live_db.execute("select name from items").fetchall() == [("row-of-b",)]


        def test_default_isolation_sees_the_app_database(live_db):
            assert live_db.execute("select current_database()").fetchone() == ("app",)
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", *LOCAL)
    result.assert_outcomes(passed=3)
    workers = {(pytester.path / f"committed-{x}").read_text() for x in "ab"}
    assert workers == {"gw0", "gw1"}
    isolated_state.assert_clean()


def test_receiver_down_warns_once_and_jsonl_stays_complete(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('n', range(5))\ndef test_n(n):\n    pass\n"
    )
    with receiving() as receiver:
        closed_url = receiver.url  # the port is closed once the block ends
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--sandbox=local",
        "--sandbox-report=r.jsonl",
        f"--sandbox-report-url={closed_url}",
    )
    result.assert_outcomes(passed=5, warnings=1)
    events = read_events(pytester.path / "r.jsonl")
    assert [e["event"] for e in events] == ["run_started", *["test_finished"] * 5, "run_finished"]
    result.stdout.fnmatch_lines(
        [
            "*PytestWarning: webhook http://127.0.0.1:*/hook: 7 of 7 events not delivered "
            "(ConnectError*refused*); */r.jsonl has every event",
            "*webhook http://127.0.0.1:*/hook: 0/7 events delivered - receiver down",
        ]
    )
    isolated_state.assert_clean()


def _hanging_run(pytester: pytest.Pytester) -> subprocess.Popen[bytes]:
    pytester.makepyfile(
        """
        import os
        import time

        import pytest


        @pytest.mark.parametrize("n", range(2))
        def test_hang(live_url, n):
            open("started-" + os.environ["PYTEST_XDIST_WORKER"], "w").close()
            time.sleep(120)
        """
    )
    # Its own session, like a terminal job: signals go to the controller and its workers.
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", *LOCAL],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_kill_9_of_an_xdist_run_leaves_an_orphan_that_gc_reaps(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    proc = _hanging_run(pytester)
    wait_for([pytester.path / "started-gw0", pytester.path / "started-gw1"], proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert len(isolated_state.sandboxes()) == 1 and isolated_state.processes()
    gc = cli("gc")
    assert "(local, orphaned)" in gc.stdout and "1 sandbox(es) removed" in gc.stdout
    isolated_state.assert_clean()


def test_ctrl_c_of_an_xdist_run_tears_down_once(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    proc = _hanging_run(pytester)
    wait_for([pytester.path / "started-gw0", pytester.path / "started-gw1"], proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    assert b"torn down in" in out
    isolated_state.assert_clean()


def test_two_runs_at_once_get_separate_sandboxes(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        """
        import os
        import time
        from pathlib import Path


        def test_meet_the_other_run(live_url):
            me, other = os.environ["RUN_NAME"], os.environ["OTHER_RUN"]
            Path(f"at-{me}").write_text(live_url)
            deadline = time.monotonic() + 60
            while not Path(f"at-{other}").exists():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *LOCAL,
             f"--sandbox-report={name}.jsonl"],
            cwd=pytester.path,
            env={**os.environ, "RUN_NAME": name, "OTHER_RUN": other},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, other in (("one", "two"), ("two", "one"))
    ]  # fmt: skip
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    started = [read_events(pytester.path / f"{n}.jsonl")[0]["sandbox"] for n in ("one", "two")]
    assert started[0]["id"] != started[1]["id"]
    assert started[0]["endpoint"] != started[1]["endpoint"]
    assert started[0]["db"]["port"] != started[1]["db"]["port"]
    isolated_state.assert_clean()


def test_gc_and_down_leave_folders_without_our_mark_alone(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    root = isolated_state.path
    lookalikes = {
        # Looks like ours (same layout, dead pytest pid, long expired) but has no managed_by.
        "deadbeef": {"id": "deadbeef", "backend": "local", "pytest_pid": 2**22 + 7,
                     "created_at": 0, "expires_at": 1},
        # Our mark, but the id does not match its folder: someone else's copy, leave it.
        "cafebabe": {"managed_by": "pytest-livesandbox", "id": "0badf00d", "backend": "local",
                     "pytest_pid": 2**22 + 7, "created_at": 0, "expires_at": 1},
    }  # fmt: skip
    for name, state in lookalikes.items():
        (root / name / "pgdata").mkdir(parents=True)
        (root / name / "state.json").write_text(json.dumps({**state, "workdir": str(root / name)}))
        (root / name / "app.log").write_text("someone else's data\n")

    ls = cli("ls")
    gc = cli("gc", "--older-than", "1s", check=False)
    down = cli("down", "deadbeef", check=False)
    assert "deadbeef" not in ls.stdout and "cafebabe" not in ls.stdout
    assert gc.returncode == 0 and "0 sandbox(es) removed" in gc.stdout
    assert down.returncode == 1
    assert "has no ownership mark (managed_by: pytest-livesandbox)" in down.stderr
    assert "nothing was touched" in down.stderr
    for name in lookalikes:
        assert (root / name / "app.log").read_text() == "someone else's data\n"
        assert (root / name / "pgdata").is_dir()
        subprocess.run(["rm", "-r", str(root / name)], check=True)
    isolated_state.assert_clean()


def test_kept_sandbox_expires_after_its_ttl_and_gc_reaps_it(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile("def test_a(live_db):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=local", "--sandbox-keep", "--sandbox-ttl=10s")
    result.assert_outcomes(passed=1)
    (kept,) = isolated_state.sandboxes()
    state = json.loads((kept / "state.json").read_text())
    assert state["expires_at"] == pytest.approx(state["created_at"] + 10, abs=0.01)
    ls = cli("ls")
    assert "kept" in ls.stdout and "EXPIRES" in ls.stdout and " in " in ls.stdout
    gc = cli("gc")
    assert "0 sandbox(es) removed" in gc.stdout  # kept and not yet expired
    time.sleep(max(0.0, state["expires_at"] - time.time()) + 0.1)
    ls = cli("ls")
    assert "expired" in ls.stdout and " ago" in ls.stdout
    dry = cli("gc", "--dry-run")
    assert f"would remove {kept.name} (local, expired)" in dry.stdout and kept.exists()
    gc = cli("gc")
    assert f"removing {kept.name} (local, expired)" in gc.stdout
    isolated_state.assert_clean()

"""--sandbox=docker end to end through pytester: the demo app's image, a PostgreSQL container,
real chaos effects, clear errors, and nothing left on the daemon afterwards."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope

IMAGE_ARG = f"--sandbox-image=app={DEMO_APP_IMAGE}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args], capture_output=True, text=True
    )


def wait_for(condition, what: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the inner run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_example_suite_passes_and_leaves_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    shutil.copytree(REPO / "conftest_examples" / "docker", pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    # App reachable, live_db isolation (rolled back / cloned database), OOM kill under a memory
    # limit, eviction and recovery, database outage: all against the real containers.
    result.assert_outcomes(passed=11)
    result.stdout.re_match_lines([r".*sandbox \w+ \(docker\) ready in [\d.]+s, torn down in.*"])
    events = [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]
    assert events[0]["sandbox"]["backend"] == "docker"
    assert events[0]["sandbox"]["db"]["password"] == ""
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def _closed_socket(path: Path) -> str:
    # A socket file nobody listens on: connecting is refused, like a stopped daemon's.
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


def test_no_daemon_is_one_clear_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", _closed_socket(pytester.path / "docker.sock"))
    pytester.makepyfile("def test_a(live_url):\n    pass\n\ndef test_b(live_db):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=docker", IMAGE_ARG)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ClusterUnreachable: no Docker daemon answered at unix://*docker.sock*",
            "*start one*scripts/docker-up*DOCKER_HOST*--sandbox=local, which needs no Docker*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    isolated_state.assert_clean()


def test_missing_image_is_named_with_how_to_load_it(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile("def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox=docker", "--sandbox-image=app=localhost/livesandbox/absent:1"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ProvisionError: the app image 'localhost/livesandbox/absent:1' is not on this "
            "Docker host and could not be pulled*",
            "*docker build -t localhost/livesandbox/absent:1 .*docker load -i image.tar*",
        ]
    )
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_crashing_app_container_shows_exit_code_and_log(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile("def test_a(live_url):\n    pass\n\ndef test_b(live_http):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox=docker", IMAGE_ARG, "--sandbox-app-env=DB_POOL_MAX=0"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            f"*AppCrashed: the app container (image {DEMO_APP_IMAGE}) exited with code 2 during "
            "start-up*",
            "*DB_POOL_MAX must be >= 1*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_ctrl_c_during_provisioning_removes_the_containers(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile("def test_a(live_url):\n    pass\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--sandbox=docker",
            IMAGE_ARG,
            "--sandbox-health-path=/never-healthy",
            "--sandbox-startup-timeout=120s",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(
        lambda: any(name.endswith("-app") for name in docker_scope.containers()),
        "the app container",
        proc,
    )
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_kill_9_leaves_labelled_containers_that_gc_reaps(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(
        """
        import time

        def test_hang(live_url):
            open("started", "w").close()
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--sandbox=docker", IMAGE_ARG],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (pytester.path / "started").exists(), "the test to start", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = docker_scope.leftovers()
    assert len(left) == 5, left  # app, db, fault proxy, network, volume
    sandbox_id = left[0].split("-")[1]
    ls = cli("ls", "--backend", "docker", "--owner", docker_scope.owner)
    row = next(line for line in ls.stdout.splitlines() if line.startswith(sandbox_id))
    assert "docker" in row and "orphaned" in row and "127.0.0.1:" in row
    # Scoped to this test's sandboxes: other tests running now have orphans of their own.
    gc = cli("gc", "--backend", "docker", "--owner", docker_scope.owner)
    assert f"removing {sandbox_id} (docker, orphaned)" in gc.stdout, gc.stdout + gc.stderr
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_keep_then_down(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile("def test_a(live_db):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=docker", IMAGE_ARG, "--sandbox-keep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*kept running*", "*remove it with: livesandbox down *"])
    kept = docker_scope.containers()
    assert len(kept) == 3, kept  # app, db, fault proxy
    sandbox_id = kept[0].split("-")[1]
    gc = cli("gc", "--backend", "docker", "--owner", docker_scope.owner)
    assert "0 sandbox(es) removed" in gc.stdout  # kept on purpose, not expired
    down = cli("down", sandbox_id)
    assert down.returncode == 0 and "(docker, " in down.stdout, down.stderr
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_one_docker_sandbox_serves_two_xdist_workers(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(
        """
        import os

        import pytest

        def test_http(live_http, livesandbox):
            assert live_http.get("/readyz").status_code == 200
            open(f"seen-{os.environ['PYTEST_XDIST_WORKER']}", "w").write(livesandbox.info.id)

        def test_rolled_back(live_db, livesandbox):
            live_db.execute("insert into items(name) values ('w')")
            open(f"seen-{os.environ['PYTEST_XDIST_WORKER']}", "w").write(livesandbox.info.id)

        @pytest.mark.db_isolation("database")
        def test_own_database(live_db):
            live_db.execute("insert into items(name) values ('w')")
            live_db.commit()

        @pytest.mark.db_isolation("database")
        def test_own_database_too(live_db):
            assert live_db.execute("select count(*) from items").fetchone() == (0,)
        """
    )
    result = pytester.runpytest_subprocess("--sandbox=docker", IMAGE_ARG, "-n", "2")
    result.assert_outcomes(passed=4)
    seen = {p.read_text() for p in pytester.path.glob("seen-gw*")}
    assert len(seen) == 1  # the workers used the controller's one sandbox
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

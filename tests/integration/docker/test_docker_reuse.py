"""Warm sandboxes (``--sandbox-reuse``) on the docker backend, through real runs on the daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pytest_livesandbox.backends.docker.resources import MANAGED_BY_LABEL, OWNER, SANDBOX_ID
from pytest_livesandbox.backends.docker.warm import REUSE_KEY
from pytest_livesandbox.info import MANAGED_BY
from tests.conftest import IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, POSTGRES_IMAGE, DockerScope
from tests.plugin.test_reuse_local import CLEAN_DB_TEST, cli, runs, start_hanging, two_runs_at_once

OPTS = (
    "-p",
    "no:cacheprovider",
    "--sandbox=docker",
    f"--sandbox-image=app={DEMO_APP_IMAGE}",
    f"--sandbox-image=postgres={POSTGRES_IMAGE}",
    "--sandbox-health-path=/readyz",
    "--sandbox-startup-timeout=90s",
)
REUSE = (*OPTS, "--sandbox-reuse")


def scoped(command: str, scope: DockerScope, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(command, "--backend", "docker", "--owner", scope.owner, *extra)


def ready_s(report: Path) -> tuple[bool, float]:
    event = json.loads(report.read_text().splitlines()[0])
    assert event["event"] == "run_started"
    return bool(event["reused"]), float(event["sandbox"]["timings"]["ready_s"])


def container_ids(scope: DockerScope) -> dict[str, str]:
    """Container name -> id of this test's sandboxes."""
    filters = {"label": [f"{MANAGED_BY_LABEL}={MANAGED_BY}", f"{OWNER}={scope.owner}"]}
    found = scope.client.containers.list(all=True, filters=filters, sparse=True)
    return {str(c.attrs["Names"][0]).lstrip("/"): str(c.id) for c in found}


def remove_warm(scope: DockerScope, isolated_state: IsolatedState) -> None:
    for line in scoped("ls", scope).stdout.splitlines()[1:]:
        down = cli("down", line.split()[0])
        assert down.returncode == 0, down.stderr
    assert scope.leftovers() == []
    isolated_state.assert_clean()
    assert list(isolated_state.path.glob("*.lease.json*")) == []


def test_second_run_reuses_the_same_containers_with_a_clean_database(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    first = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r1.jsonl")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*(docker) ready in *kept warm (reuse key *"])
    before = container_ids(docker_scope)
    assert len(before) == 3, before  # db, fault proxy, app
    labels = docker_scope.client.containers.get(next(iter(before.values()))).labels
    ls = scoped("ls", docker_scope).stdout
    assert " warm " in ls and labels[REUSE_KEY] in ls, ls
    assert "0 sandbox(es) removed" in scoped("gc", docker_scope).stdout  # warm: gc keeps it
    second = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r2.jsonl")
    second.assert_outcomes(passed=1)  # the row of the first run is gone
    second.stdout.fnmatch_lines(["*(docker) reused, ready in *"])
    assert container_ids(docker_scope) == before  # the very same containers
    one, two = runs(pytester)
    assert one == {"id": one["id"], "reused": False}
    assert two == {"id": one["id"], "reused": True}
    (cold_reused, cold), (warm_reused, warm) = (
        ready_s(pytester.path / "r1.jsonl"),
        ready_s(pytester.path / "r2.jsonl"),
    )
    assert (cold_reused, warm_reused) == (False, True)
    assert warm < cold, (warm, cold)  # the ratio itself: benchmarks/warm_start.py
    remove_warm(docker_scope, isolated_state)


def test_a_changed_config_provisions_a_fresh_sandbox(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    pytester.runpytest_subprocess(*REUSE).assert_outcomes(passed=1)
    first = container_ids(docker_scope)
    changed = pytester.runpytest_subprocess(*REUSE, "--sandbox-app-env=GREETING=changed")
    changed.assert_outcomes(passed=1)
    one, two = runs(pytester)
    assert one["id"] != two["id"] and two["reused"] is False
    both = container_ids(docker_scope)
    assert set(first) < set(both) and len(both) == 6
    keys = {docker_scope.client.containers.get(cid).labels[REUSE_KEY] for cid in both.values()}
    assert len(keys) == 2, keys
    remove_warm(docker_scope, isolated_state)


def test_two_runs_at_once_get_two_sandboxes(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    two_runs_at_once(pytester, *REUSE, timeout=180)
    remove_warm(docker_scope, isolated_state)


def test_kill_9_during_a_reused_run_is_repaired_by_the_next(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    pytester.runpytest_subprocess(*REUSE, "test_clean.py").assert_outcomes(passed=1)
    proc = start_hanging(pytester, *REUSE)
    proc.send_signal(signal.SIGKILL)  # it claimed the warm sandbox and dirtied its database
    proc.wait()
    assert " orphaned " in scoped("ls", docker_scope).stdout
    again = pytester.runpytest_subprocess(*REUSE, "test_clean.py")
    again.assert_outcomes(passed=1)  # the database is clean again
    one, two = runs(pytester)
    assert two == {"id": one["id"], "reused": True}
    remove_warm(docker_scope, isolated_state)


def test_an_expired_lease_is_reaped_by_gc(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_clean=CLEAN_DB_TEST)
    result = pytester.runpytest_subprocess(*REUSE, "--sandbox-reuse-idle=5s")
    result.assert_outcomes(passed=1)
    (sandbox_id,) = {
        docker_scope.client.containers.get(cid).labels[SANDBOX_ID]
        for cid in container_ids(docker_scope).values()
    }
    # (gc keeping a warm sandbox whose lease holds: the first test of this file)
    lease = json.loads((isolated_state.path / f"{sandbox_id}.lease.json").read_text())
    assert lease["state"] == "warm"
    lapses_at = lease["expires_at"]
    time.sleep(max(0.0, lapses_at - time.time()))
    while docker_scope.leftovers():
        assert time.time() - lapses_at < 10, "not reaped 10 s after its lease lapsed"
        out = scoped("gc", docker_scope).stdout
        time.sleep(0.2)
    assert f"{sandbox_id} (docker, lapsed)" in out and "1 sandbox(es) removed" in out, out
    isolated_state.assert_clean()
    assert list(isolated_state.path.glob("*.lease.json*")) == []

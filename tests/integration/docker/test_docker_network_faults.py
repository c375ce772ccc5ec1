"""Latency, every network_fault kind and http_fault on --sandbox=docker, via its proxy container.

The inner tests are the files the local backend passes (tests/examples/chaos_network.py,
chaos_http.py, chaos_scoped.py), so the semantics match: recorded, verified, counted (hits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope

EXAMPLES = REPO / "tests" / "examples"


def docker_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        f"""
        [pytest]
        livesandbox_backend = docker
        livesandbox_image = app={DEMO_APP_IMAGE}
        livesandbox_health_path = /readyz
        livesandbox_chaos_verify_timeout = 30s
        """
    )


def run(pytester: pytest.Pytester, *names: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(**{f"test_{n}": (EXAMPLES / f"{n}.py").read_text() for n in names})
    report = pytester.path / "r.jsonl"
    result = pytester.runpytest_subprocess("-n", "2", f"--sandbox-report={report}")
    return result, events(report)


def events(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run_started":
            found["sandbox"] = event["sandbox"]
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    return found


def test_latency_and_network_faults_through_the_proxy_container(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    docker_ini(pytester)
    result, found = run(pytester, "chaos_network")
    result.assert_outcomes(passed=10)
    assert found["sandbox"]["backend"] == "docker"
    for name, kind in [
        ("test_app_latency", "latency"),
        ("test_db_latency", "latency"),
        ("test_reset", "reset"),
        ("test_timeout", "timeout"),
        ("test_db_reset", "reset"),
        ("test_bandwidth", "bandwidth"),
        ("test_slow_close", "slow_close"),
    ]:
        (record,) = found[name]["chaos"]
        assert record["kind"] == kind and record["toxic_id"], record
        assert record["hits"] >= 1, record  # proven to fire
        assert record["removed_at"] >= record["applied_at"]
    # Client -> app faults of a test sharing the sandbox are scoped to its requests.
    assert found["test_app_latency"]["chaos"][0]["scope"]
    assert "scope" not in found["test_db_latency"]["chaos"][0]
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_http_faults_and_scopes_on_docker(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    docker_ini(pytester)
    result, found = run(pytester, "chaos_http", "chaos_scoped")
    result.assert_outcomes(passed=17, errors=1)  # chaos_http's test_unfired errors on purpose
    twice = found["test_fails_twice_then_succeeds"]["chaos"][0]
    assert (twice["kind"], twice["hits"], twice["requests_seen"]) == ("http", 2, 4)
    assert found["test_abort"]["chaos"][0]["hits"] == 1
    assert found["test_delay"]["chaos"][0]["hits"] == 3
    assert found["test_unfired"]["outcome"] == "error"
    result.stdout.fnmatch_lines(["E *ChaosNotObserved: *affected 0 requests*"])
    for record in found["test_scoped"]["chaos"] + found["test_scoped_reset"]["chaos"]:
        assert record["hits"] > 0 and record["scope"]
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_without_the_proxy_the_app_reaches_postgres_directly(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    docker_ini(pytester)
    ini = pytester.path / "tox.ini"
    ini.write_text(ini.read_text().rstrip() + "\nlivesandbox_fault_proxy = false\n")
    pytester.makepyfile(
        test_plain="""
        import pytest

        def test_items(live_http, livesandbox):
            assert live_http.get("/items").status_code == 200
            assert "fault_proxy" not in livesandbox.info.extra

        @pytest.mark.latency(ms=10)
        def test_refused(): pass
        """
    )
    result = pytester.runpytest_subprocess("--collect-only")
    result.stderr.fnmatch_lines(["*@latency: needs the fault proxy, which is off*"])
    (pytester.path / "test_plain.py").write_text(
        (pytester.path / "test_plain.py").read_text().split("@pytest.mark.latency")[0]
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_a_missing_proxy_image_is_one_readable_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    docker_ini(pytester)
    pytester.makepyfile(test_a="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox-image=fault-proxy=localhost/livesandbox/no-such-proxy:1"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*the fault-proxy image 'localhost/livesandbox/no-such-proxy:1' is not on this "
            "Docker host and could not be pulled*",
        ]
    )
    assert "--sandbox-image fault-proxy=IMAGE" in result.stdout.str() + result.stderr.str()
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

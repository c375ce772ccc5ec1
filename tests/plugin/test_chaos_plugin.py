"""Chaos markers end to end: real sandbox, real faults, inner runs in subprocesses (pytester).

Each inner run provisions its own local sandbox (about a second); the whole module runs in
well under a minute on two shared cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_livesandbox.backends.local.limits import cgroup_writable
from pytest_livesandbox.config import in_ci
from pytest_livesandbox.locations import state_root

ROOT = Path(__file__).resolve().parents[2]
DEMO_APP = ROOT / "examples" / "demo_app" / "app.py"
EXAMPLES = ROOT / "tests" / "examples"


@pytest.fixture
def sandbox_ini(pytester: pytest.Pytester) -> pytest.Pytester:
    if not DEMO_APP.exists():
        reason = f"the demo app is missing at {DEMO_APP} (merge examples/ from main)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    pytester.makeini(
        f"""
        [pytest]
        livesandbox_backend = local
        livesandbox_app_cmd = {{python}} {DEMO_APP}
        livesandbox_health_path = /readyz
        livesandbox_chaos_verify_timeout = 10s
        """
    )
    return pytester


def copy_example(pytester: pytest.Pytester, name: str) -> None:
    # Not pytester.copy_example: that needs the pytester_example_dir ini key of the main suite.
    pytester.makepyfile(**{"test_" + name.removesuffix(".py"): (EXAMPLES / name).read_text()})


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run pytest in a subprocess with a JSONL report; check the run left nothing behind."""
    report = pytester.path / "report.jsonl"
    result = pytester.runpytest_subprocess(f"--sandbox-report={report}", *args)
    found: dict[str, Any] = {}
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run_started":
            found["sandbox_id"] = event["sandbox"]["id"]
        elif event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    assert_nothing_left(found["sandbox_id"])
    return result, found


def assert_nothing_left(sandbox_id: str) -> None:
    """No folder, process or cgroup of this sandbox remains (others' sandboxes are ignored)."""
    workdir = state_root() / sandbox_id
    assert not workdir.exists(), sorted(str(f) for f in workdir.rglob("*"))
    alive = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            mine = str(workdir) in " ".join(proc.info["cmdline"] or [])
            mine = mine or proc.environ().get("LIVESANDBOX_ID") == sandbox_id
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if mine:
            alive.append(" ".join(proc.info["cmdline"] or []))
    assert alive == []
    assert list(Path("/sys/fs/cgroup").glob(f"*/**/livesandbox-{sandbox_id}-*")) == []


def test_every_marker_has_its_real_effect_under_xdist(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_effects.py")
    result, found = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=12)
    evict = found["test_evict"]["chaos"][0]
    assert evict["new_pid"] != evict["old_pid"]
    assert 0 < evict["recovery_s"] < 10
    limit = found["test_memory_limit"]["chaos"][0]
    assert limit["mode"] in ("cgroup", "rlimit")
    if limit["mode"] == "cgroup":
        assert limit["outcome"].startswith("killed (signal 9 by the OOM killer)")
    cpu = found["test_cpu_limit"]["chaos"][0]
    if cpu["mode"] == "cgroup":
        assert cpu["cpu_throttled_periods"] > 0 and cpu["cpu_throttled_s"] > 0
        assert cpu["outcome"] == "throttled"
    connections = found["test_db_connections"]["chaos"][0]
    assert connections["restored_limit"] == -1 and connections["terminated"] >= 1
    kill = found["test_kill_db"]["chaos"][0]
    assert kill["down_s"] >= 1.0 and kill["recovery_s"] < 10
    assert [c["kind"] for c in found["test_imperative"]["chaos"]] == ["latency", "evict"]
    for record in (evict, limit, connections, kill):
        assert record["removed_at"] >= record["applied_at"]
    assert found["test_baseline_after"]["chaos"] == []


def test_a_dead_worker_leaves_no_fault(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_worker_death.py")
    result, _ = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running '*test_dies_holding_faults'"])


def test_escaped_faults_are_repaired_or_stop_later_tests(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_leak.py")
    os.environ["CHAOS_LEAK_BREAK"] = "1"
    try:
        result, found = run(sandbox_ini, "-o", "livesandbox_chaos_verify_timeout=1s")
    finally:
        os.environ.pop("CHAOS_LEAK_BREAK", None)
    result.assert_outcomes(passed=3, errors=3)  # test_leaks_a_toxic: passed, then errored
    result.stdout.fnmatch_lines(
        [
            # A fault left behind is found, removed, and the test that left it errors.
            "*ERROR at teardown of test_leaks_a_toxic*",
            "E *ChaosError: chaos teardown: the sandbox did not return to baseline: "
            "the fault proxy still has toxics: latency on app; repaired: removed stray toxics*",
            # Damage that cannot be repaired stops the tests that come after it.
            "*ERROR at teardown of test_breaks_the_app_for_good*",
            "E *ChaosError: chaos teardown: *the sandbox stays degraded: the app is not ready*",
            "*ERROR at setup of test_runs_after_the_damage*",
            "E *ChaosError: the sandbox is degraded and could not be repaired: *",
        ]
    )
    assert found["test_next_test_sees_baseline"]["outcome"] == "passed"
    assert found["test_breaks_the_app_for_good"]["outcome"] == "error"


def test_faults_are_removed_when_the_run_is_stopped(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_interrupt.py")
    result, found = run(sandbox_ini)  # checks that no cgroup, process or folder is left
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "test_never_runs" not in found
    cgroups = (sandbox_ini.path / "cgroups.txt").read_text().split()
    if cgroup_writable("memory"):
        assert cgroups, "the memory limit was not in force when the run was stopped"
    assert [path for path in cgroups if Path(path).exists()] == []


BAD_MARKERS = """
import pytest

@pytest.mark.latency(ms="300")
def test_unitless(): pass

@pytest.mark.latency(ms=300, target="cache")
def test_target(): pass

@pytest.mark.evict_pod(component="backend", when="during", delay="soon")
def test_delay(): pass

@pytest.mark.resource_limits(memory="96")
def test_memory(): pass

@pytest.mark.network_fault(kind="reset", colour="red")
def test_unknown(): pass

@pytest.mark.kill_db(when="during", delay="1s")
@pytest.mark.db_connections(max=2)
def test_fine(): pass
"""


def test_bad_arguments_are_collection_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad=BAD_MARKERS)
    result = pytester.runpytest("--collect-only", "--strict-markers", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*bad markers:",
            "*test_bad.py::test_unitless: @latency: ms='300' must be a number*",
            "*test_bad.py::test_target: @latency: target='cache' is not one of 'db', 'app'",
            "*test_bad.py::test_delay: @evict_pod: delay='soon': 'soon' is not a duration*",
            "*test_bad.py::test_memory: @resource_limits: memory='96' is not a memory size*",
            "*test_bad.py::test_unknown: @network_fault: unknown argument 'colour'*",
        ]
    )
    assert "test_fine" not in result.stderr.str()


def test_bad_arguments_under_xdist_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad=BAD_MARKERS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # xdist: "1 error", nothing ran
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_bad.py*",
            "*pytest-livesandbox: bad markers:",
            "*test_bad.py::test_unitless: @latency: ms='300' must be a number*",
            "*test_bad.py::test_unknown: @network_fault: unknown argument 'colour'*",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_markers_the_backend_cannot_honour(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cap="""
        import pytest

        @pytest.mark.latency(ms=10)
        def test_needs_proxy(): pass
        """
    )
    pytester.makeini("[pytest]\nlivesandbox_fault_proxy = false\n")
    result = pytester.runpytest("--collect-only", "--sandbox=local", "-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(
        ["*test_needs_proxy: @latency: needs the fault proxy, which is off*"]
    )
    for backend in ("docker", "kube", "gke"):
        # Each runs the proxy (a container, a pod); with it turned off the marker is refused.
        result = pytester.runpytest(
            "--collect-only", f"--sandbox={backend}", "-p", "no:cacheprovider"
        )
        result.stderr.fnmatch_lines(
            ["*test_needs_proxy: @latency: needs the fault proxy, which is off*"]
        )


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    for name in (
        "latency",
        "network_fault",
        "evict_pod",
        "resource_limits",
        "db_connections",
        "kill_db",
        "http_fault",
    ):
        result.stdout.fnmatch_lines([f"@pytest.mark.{name}(*"])

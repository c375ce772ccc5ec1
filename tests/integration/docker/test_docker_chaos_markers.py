"""The chaos markers on --sandbox=docker, end to end: one inner run under -n 2 (pytester)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope

EXAMPLES = REPO / "tests" / "examples"


def reports(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    return found


def test_markers_have_real_effects_and_clock_is_refused(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        livesandbox_backend = docker
        livesandbox_image = app={DEMO_APP_IMAGE}
        livesandbox_health_path = /readyz
        livesandbox_chaos_verify_timeout = 30s
        """
    )
    pytester.makepyfile(
        test_chaos=(EXAMPLES / "chaos_containers.py").read_text(),
        test_unsupported=(EXAMPLES / "chaos_unsupported.py").read_text(),
    )
    # The refused marker is a collection error, which stops the run before a sandbox is made;
    # --continue-on-collection-errors runs the rest against it.
    result = pytester.runpytest_subprocess(
        "-n", "2", "--sandbox-report=r.jsonl", "--continue-on-collection-errors"
    )
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_clock: @clock: the app runs without libfaketime (livesandbox_fake_clock = off*"]
    )
    found = reports(pytester.path / "r.jsonl")
    evict = found["test_evict"]["chaos"][0]
    assert 0 < evict["terminated_s"] <= evict["recovery_s"] < 30
    limit = found["test_memory_limit"]["chaos"][0]
    assert limit["oom_kills"] >= 1 and limit["outcome"] == "killed (OOM)"
    assert limit["recovery_s"] > 0
    connections = found["test_db_connections"]["chaos"][0]
    assert connections["restored_limit"] == -1 and connections["terminated"] >= 1
    kill = found["test_kill_db"]["chaos"][0]
    assert kill["down_s"] >= 2 and kill["start_s"] > 0 and "recovery_s" in kill
    assert [c["kind"] for c in found["test_imperative"]["chaos"]] == ["evict", "resource_limits"]
    for record in (evict, limit, connections, kill):
        assert record["removed_at"] >= record["applied_at"]
    print({k: v for k, v in evict.items() if k.endswith("_s")}, limit.get("recovery_s"), kill)
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

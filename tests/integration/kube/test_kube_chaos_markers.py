"""The chaos markers on --sandbox=kube and --sandbox=gke, end to end on the real cluster.

One inner run each, under -n 2. gke without --sandbox-gke-cluster uses the kubeconfig's current
context: a GKE sandbox is a kube sandbox with other credentials, so every kube fault must work.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.conftest import REPO, IsolatedState

pytestmark = pytest.mark.kube
EXAMPLES = REPO / "tests" / "examples"


@pytest.mark.parametrize("backend", ["kube", "gke"])
def test_markers_have_real_effects_next_to_a_latency_test(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    kube_client: Any,
    core: Any,
    backend: str,
) -> None:
    shutil.copytree(REPO / "conftest_examples" / "kube", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    text = ini.read_text().replace("../../examples/demo_app/k8s", str(manifests))
    ini.write_text(text + "livesandbox_chaos_verify_timeout = 60s\n")
    (pytester.path / "test_demo_app.py").unlink()
    pytester.makepyfile(
        test_chaos=(EXAMPLES / "chaos_containers.py").read_text(),
        # Once refused on kube (no proxy in the namespace); now it runs like any other test.
        test_latency="""
            import pytest

            @pytest.mark.latency(ms=100, target="db")
            def test_latency(live_http):
                assert live_http.get("/items").status_code == 200
            """,
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", f"--sandbox={backend}", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=8)
    found: dict[str, Any] = {}
    namespace = ""
    for line in (pytester.path / "r.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run_started":
            namespace = event["sandbox"]["namespace"]
            assert event["sandbox"]["backend"] == backend
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    evict = found["test_evict"]["chaos"][0]
    assert evict["new_pod"] != evict["pod"] and 0 < evict["recovery_s"] < 120
    limit = found["test_memory_limit"]["chaos"][0]
    assert limit["resources"]["limits"]["memory"] == str(96 * 1024 * 1024)
    assert limit["oom_kills"] >= 1 and limit["outcome"] == "killed (OOM)"
    connections = found["test_db_connections"]["chaos"][0]
    assert connections["restored_limit"] == -1 and connections["terminated"] >= 1
    kill = found["test_kill_db"]["chaos"][0]
    assert kill["down_s"] >= 2 and kill["restarted"] == ["backend"]
    assert [c["kind"] for c in found["test_imperative"]["chaos"]] == ["evict", "resource_limits"]
    for record in (evict, limit, connections, kill):
        assert record["removed_at"] >= record["applied_at"]
    print(
        {k: v for k, v in evict.items() if k.endswith("_s")},
        {k: v for k, v in limit.items() if k.endswith("_s")},
        {k: v for k, v in kill.items() if k.endswith("_s")},
    )
    with pytest.raises(ApiException) as gone:
        core.read_namespace(namespace)
    assert gone.value.status == 404 or gone.value.status == 409
    isolated_state.assert_clean()

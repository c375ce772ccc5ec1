"""Latency and every network_fault kind on --sandbox=kube and --sandbox=gke (our cluster's context).

The fault proxy runs as a Deployment in the sandbox namespace (image
localhost/livesandbox/fault-proxy:1 from cluster/build-images); the inner tests are the same file
the local backend passes (tests/examples/chaos_network.py), so the semantics match.
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


def kube_folder(pytester: pytest.Pytester, backend: str) -> None:
    shutil.copytree(REPO / "conftest_examples" / "kube", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    text = ini.read_text().replace("../../examples/demo_app/k8s", str(manifests))
    text = text.replace("livesandbox_backend = kube", f"livesandbox_backend = {backend}")
    ini.write_text(text + "livesandbox_chaos_verify_timeout = 60s\n")
    (pytester.path / "test_demo_app.py").unlink()
    pytester.makepyfile(test_network=(EXAMPLES / "chaos_network.py").read_text())


@pytest.mark.parametrize("backend", ["kube", "gke"])
def test_latency_and_network_faults_through_the_namespace_proxy(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    kube_client: Any,
    core: Any,
    backend: str,
) -> None:
    kube_folder(pytester, backend)
    result = pytester.runpytest_subprocess("-n", "2", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=10)
    found: dict[str, Any] = {}
    namespace = ""
    for line in (pytester.path / "r.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run_started":
            namespace = event["sandbox"]["namespace"]
            assert event["sandbox"]["backend"] == backend
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
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
    with pytest.raises(ApiException) as gone:
        core.read_namespace(namespace)
    assert gone.value.status in (404, 409)
    isolated_state.assert_clean()


def test_http_faults_and_scopes_through_the_namespace_proxy(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any, core: Any
) -> None:
    # The proxy pod's app route parses HTTP/1.1: http_fault, and faults scoped to the test's
    # requests (X-Livesandbox-Test through the port-forward), as on local.
    kube_folder(pytester, "kube")
    (pytester.path / "test_network.py").unlink()
    pytester.makepyfile(
        test_http=(EXAMPLES / "chaos_http.py").read_text(),
        test_scoped=(EXAMPLES / "chaos_scoped.py").read_text(),
    )
    result = pytester.runpytest_subprocess("-n", "2", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=17, errors=1)  # chaos_http's test_unfired errors on purpose
    found: dict[str, Any] = {}
    namespace = ""
    for line in (pytester.path / "r.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run_started":
            namespace = event["sandbox"]["namespace"]
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    twice = found["test_fails_twice_then_succeeds"]["chaos"][0]
    assert (twice["kind"], twice["hits"], twice["requests_seen"]) == ("http", 2, 4)
    assert twice["scope"]
    assert found["test_abort"]["chaos"][0]["hits"] == 1
    assert found["test_unfired"]["outcome"] == "error"
    result.stdout.fnmatch_lines(["E *ChaosNotObserved: *affected 0 requests*"])
    for record in found["test_scoped"]["chaos"] + found["test_scoped_reset"]["chaos"]:
        assert record["hits"] > 0 and record["scope"]
    with pytest.raises(ApiException) as gone:
        core.read_namespace(namespace)
    assert gone.value.status in (404, 409)
    isolated_state.assert_clean()

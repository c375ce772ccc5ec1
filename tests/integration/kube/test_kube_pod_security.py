"""Which Pod Security Standard each sandbox pod passes, asked of the API server's admission.

A real kube sandbox comes up; its pods (PostgreSQL, the demo app, the fault proxy) are then
created again, server-side dry-run, in namespaces labelled
``pod-security.kubernetes.io/enforce=restricted`` and ``=baseline``: the PodSecurity admission
plugin of our API server answers for each. The fault proxy must pass ``restricted`` (legal on GKE
Autopilot); the whole sandbox passes ``baseline`` (PostgreSQL's image starts as root, and the demo
app's manifests set no securityContext).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.conftest import IsolatedState
from tests.integration.kube.test_kube_route_artifacts import example

pytestmark = pytest.mark.kube

INNER = """
import json, os
from kubernetes import client, config

def test_pods(livesandbox):
    api = config.new_client_from_config(os.environ["KUBECONFIG"])
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(livesandbox.info.namespace).items
    specs = {p.metadata.labels.get("app.kubernetes.io/component", p.metadata.name):
             api.sanitize_for_serialization(p.spec) for p in pods}
    with open(os.environ["POD_SPECS"], "w") as f:
        json.dump(specs, f)
"""


def admitted(core: Any, namespace: str, spec: dict[str, Any]) -> str:
    """'' when a pod of ``spec`` is admitted in ``namespace`` (dry run), else the refusal."""
    spec = {k: v for k, v in spec.items() if k not in ("nodeName",)}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-probe"}, "spec": spec}
    try:
        core.create_namespaced_pod(namespace, body, dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return ""


def test_the_proxy_passes_restricted_and_the_sandbox_passes_baseline(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example(pytester, "kube", INNER)
    specs_file = pytester.path / "specs.json"
    monkeypatch.setenv("POD_SPECS", str(specs_file))
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    import json

    specs = json.loads(specs_file.read_text())
    assert set(specs) == {"backend", "postgres", "fault-proxy"}, set(specs)
    verdicts: dict[str, dict[str, str]] = {}
    for level in ("restricted", "baseline"):
        ns = f"psa-{level}-{uuid.uuid4().hex[:6]}"
        labels = {"pod-security.kubernetes.io/enforce": level, "livesandbox": "smoke"}
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels))
        )
        try:
            verdicts[level] = {name: admitted(core, ns, spec) for name, spec in specs.items()}
        finally:
            core.delete_namespace(ns, grace_period_seconds=0)
    print(verdicts)
    assert verdicts["restricted"]["fault-proxy"] == ""
    assert "violates PodSecurity" in verdicts["restricted"]["postgres"]
    assert all(v == "" for v in verdicts["baseline"].values()), verdicts["baseline"]
    isolated_state.assert_clean()

"""The clock marker on --sandbox=kube: libfaketime from a ConfigMap, control file in an emptyDir.

The auth example's token tests and the container clock tests run against the demo app's pod on
the real cluster; its clock moves (asserted on its own ``/time`` and token expiry), comes back,
and the sidecar that writes the control file passes the ``restricted`` Pod Security Standard.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from pytest_livesandbox.backends.kube import clock
from pytest_livesandbox.chaos.clock import find_faketime
from tests.conftest import REPO, IsolatedState
from tests.integration.kube.test_kube_backend import namespace_exists

pytestmark = [
    pytest.mark.kube,
    pytest.mark.skipif(
        find_faketime() is None, reason="needs libfaketime: apt-get install -y libfaketime"
    ),
]


def finished(path: Path) -> dict[str, Any]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return {e["nodeid"].split("::")[-1]: e for e in events if e["event"] == "test_finished"}


def test_the_app_pod_clock_moves_tokens_expire_and_it_comes_back(
    pytester: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    shutil.copytree(REPO / "conftest_examples" / "auth", pytester.path, dirs_exist_ok=True)
    kube_ini = (REPO / "conftest_examples" / "kube" / "pytest.ini").read_text()
    manifests = REPO / "examples" / "demo_app" / "k8s"
    (pytester.path / "pytest.ini").write_text(
        kube_ini.replace("../../examples/demo_app/k8s", str(manifests))
        + "livesandbox_fake_clock = on\n"
    )
    pytester.makepyfile(
        test_clock=(REPO / "tests" / "examples" / "clock_containers.py").read_text()
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=12)  # the auth example's 8 (4 move the clock) + 4
    found = finished(pytester.path / "r.jsonl")
    (hour,) = found["test_an_expired_token_is_refused_and_refresh_works"]["chaos"]
    assert hour["spec"] == "+3600.000000 x1" and hour["restored_spec"] == "+0 x1"
    assert len(hour["pods"]) == 1 and 3590 < hour["app_offset_s"] < 3610
    assert abs(hour["app_offset_after_s"]) < 3
    lines = [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]
    namespace = lines[0]["sandbox"]["namespace"]
    assert lines[0]["sandbox"]["extra"]["fake_clock"]["containers"] == ["backend"]
    assert not namespace_exists(core, namespace)
    isolated_state.assert_clean()


def test_the_clock_sidecar_passes_restricted(core: Any) -> None:
    ns = f"psa-clock-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted", "livesandbox": "smoke"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels)))
    spec = {
        "containers": [clock.sidecar("localhost/livesandbox/fault-proxy:1")],
        "volumes": [
            {"name": clock.CONFIGMAP, "configMap": {"name": clock.CONFIGMAP}},
            {"name": clock.VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    }
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-clock"}, "spec": spec}
    try:
        core.create_namespaced_pod(ns, body, dry_run="All")
    except ApiException as exc:
        pytest.fail(f"the clock sidecar is refused under restricted: {exc.body}")
    finally:
        core.delete_namespace(ns, grace_period_seconds=0)


def test_an_app_that_does_not_load_the_library_is_a_setup_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    manifests = pytester.path / "k8s"
    shutil.copytree(REPO / "examples" / "demo_app" / "k8s", manifests)
    deployment = manifests / "deployment.yaml"
    # The demo app started by a wrapper that drops LD_PRELOAD, as some entrypoints do.
    deployment.write_text(
        deployment.read_text().replace(
            "          imagePullPolicy: Never\n",
            "          imagePullPolicy: Never\n"
            '          command: ["env", "-u", "LD_PRELOAD", "python3", "/app/app.py"]\n',
        )
    )
    kube_ini = (REPO / "conftest_examples" / "kube" / "pytest.ini").read_text()
    (pytester.path / "pytest.ini").write_text(
        kube_ini.replace("../../examples/demo_app/k8s", str(manifests))
        + "livesandbox_fake_clock = on\n"
    )
    pytester.makepyfile("def test_nothing(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*--sandbox-fake-clock=on: the app pod(s) backend-* never read libfaketime's control "
            "file*clears LD_PRELOAD*"
        ]
    )
    isolated_state.assert_clean()

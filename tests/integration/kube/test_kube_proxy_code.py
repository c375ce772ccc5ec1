"""The namespace fault proxy runs the plugin's own code (a ConfigMap), with any python3 image.

The proof that the code is the plugin's and not the image's: the proxy runs on the demo app's
image (python3, but no fault-proxy files in it) and the latency tests of
tests/examples/chaos_network.py pass through it. An image without python3 (our PostgreSQL image)
is one readable error naming the image and the fix, and the namespace is removed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.conftest import IsolatedState
from tests.integration.kube.conftest import DEMO_IMAGE, POSTGRES_IMAGE
from tests.integration.kube.test_kube_network_faults import kube_folder
from tests.integration.kube.test_kube_route_artifacts import example

pytestmark = pytest.mark.kube

CODE_CHECK = f"""

def test_the_proxy_pod_runs_the_plugins_code(livesandbox):
    import os
    from kubernetes import client, config
    from pytest_livesandbox import faultproxy
    from pytest_livesandbox.backends.kube import faultproxy as fp

    core = client.CoreV1Api(config.new_client_from_config(os.environ["KUBECONFIG"]))
    namespace = livesandbox.info.namespace
    configmap = core.read_namespaced_config_map(fp.CODE_CONFIGMAP, namespace)
    assert configmap.data == faultproxy.server_code()
    assert configmap.metadata.labels == fp.LABELS
    (pod,) = core.list_namespaced_pod(namespace, label_selector=fp.SELECTOR).items
    assert pod.metadata.annotations[fp.CODE_ANNOTATION] == faultproxy.code_digest(configmap.data)
    (container,) = pod.spec.containers
    assert container.image == {DEMO_IMAGE!r}
    assert container.command == list(faultproxy.CONTAINER_COMMAND)
    (mount,) = container.volume_mounts
    assert mount.mount_path == faultproxy.CODE_DIR and mount.read_only
    (volume,) = [v for v in pod.spec.volumes if v.name == mount.name]
    assert volume.config_map.name == fp.CODE_CONFIGMAP
    # Its readiness never depended on the app or the database, which started after it: a probe
    # of a route (whose connections go upstream) failed until both were up and took the proxy
    # out of its db Service meanwhile.
    assert container.readiness_probe.tcp_socket.port == fp.READY_PORT
    selector = f"involvedObject.name={{pod.metadata.name}}"
    events = core.list_namespaced_event(namespace, field_selector=selector)
    failed = [e.message for e in events.items if e.reason == "Unhealthy"]
    # Only the ready port may have been refused (probed before the process listened); never a
    # route's port, and never a reset passed on from an upstream still starting (the old probe
    # showed that when the app came up after it: racy, so the port check above is the guard).
    assert [m for m in failed if f":{{fp.READY_PORT}}: connect: connection refused" not in m] == []
"""


def gone(core: Any, namespace: str) -> bool:
    try:
        return core.read_namespace(namespace).status.phase == "Terminating"
    except ApiException as exc:
        return exc.status == 404


def test_the_proxy_runs_the_plugins_code_on_any_python3_image(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any, core: Any
) -> None:
    kube_folder(pytester, "kube")
    tests = pytester.path / "test_network.py"
    tests.write_text(tests.read_text() + CODE_CHECK)
    result = pytester.runpytest_subprocess(
        f"--sandbox-image=fault-proxy={DEMO_IMAGE}",
        f"--sandbox-image=postgres={POSTGRES_IMAGE}",  # the CLI's list replaces the ini's
        "-k",
        "baseline_before or app_latency or db_latency or plugins_code",
        "--sandbox-report=r.jsonl",
    )
    result.assert_outcomes(passed=4)
    isolated_state.assert_clean()


@pytest.mark.parametrize(
    ("options", "container", "fix"),
    [
        ((), "fault-proxy", "livesandbox_fault_proxy = false"),
        (
            ("--sandbox-fault-proxy=false", "--sandbox-fake-clock=on"),
            "livesandbox-clock",
            "livesandbox_fake_clock = off",
        ),
    ],
    ids=["proxy", "clock-sidecar"],
)
def test_an_image_without_python3_is_one_readable_error(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    options: tuple[str, ...],
    container: str,
    fix: str,
) -> None:
    example(pytester, "kube", "def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        f"--sandbox-image=fault-proxy={POSTGRES_IMAGE}",
        f"--sandbox-image=postgres={POSTGRES_IMAGE}",
        "--sandbox-startup-timeout=90s",
        *options,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*RolloutFailed: the * in namespace sandbox-* cannot start: the fault proxy's image "
            f"'{POSTGRES_IMAGE}' has no python3 (container {container}: *python3*",
            f"*Hint: pass --sandbox-image fault-proxy=IMAGE with python3*{fix}*",
        ]
    )
    text = result.stdout.str()
    (namespace,) = set(re.findall(r"in namespace (sandbox-[a-z0-9-]+) cannot start", text))
    assert gone(core, namespace), namespace
    isolated_state.assert_clean()

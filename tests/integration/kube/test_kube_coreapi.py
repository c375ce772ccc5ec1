"""CoreApi against the real API server: the same models and errors as CoreV1Api, without it.

The import check runs in a fresh interpreter: tests/conftest.py loads the whole client here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from pytest_livesandbox.backends.kube.coreapi import CoreApi
from tests.integration.kube.test_cluster_smoke import APP_PORT, demo_container, wait_for

pytestmark = pytest.mark.kube


def test_namespaces_secrets_and_errors_as_the_generated_api(
    kube_client: Any, core: Any, namespace: str
) -> None:
    lite = CoreApi(kube_client)
    ns = lite.read_namespace(namespace)
    assert isinstance(ns, client.V1Namespace)
    assert ns.metadata.name == namespace
    listed = lite.list_namespace(label_selector="livesandbox=smoke", limit=500)
    assert isinstance(listed, client.V1NamespaceList)
    assert namespace in [n.metadata.name for n in listed.items]
    # A strategic-merge patch with the read resourceVersion, then a stale one: 409 as usual.
    version = ns.metadata.resource_version
    body = {"metadata": {"annotations": {"t": "1"}, "resourceVersion": version}}
    patched = lite.patch_namespace(namespace, body)
    assert patched.metadata.annotations["t"] == "1"
    assert core.read_namespace(namespace).metadata.annotations["t"] == "1"
    with pytest.raises(ApiException) as stale:
        lite.patch_namespace(namespace, body)
    assert stale.value.status == 409
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"url": "x"}),
    )
    secret = lite.read_namespaced_secret("s", namespace)
    assert isinstance(secret, client.V1Secret) and secret.data["url"] == "eA=="
    with pytest.raises(ApiException) as missing:
        lite.read_namespaced_secret("nope", namespace)
    assert missing.value.status == 404
    with pytest.raises(TypeError, match="pretty"):
        lite.list_namespace(pretty="true")
    # Anything else is CoreV1Api's own method.
    lite.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "b"})
    )
    assert core.read_namespaced_config_map("cm", namespace).data == {"a": "b"}


def test_pods_watch_and_port_forward(kube_client: Any, core: Any, namespace: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="app", labels={"app": "demo"}),
        spec=client.V1PodSpec(containers=[demo_container()]),
    )
    core.create_namespaced_pod(namespace, pod)
    lite = CoreApi(kube_client)
    seen = []
    w = watch.Watch()
    for event in w.stream(lite.list_namespaced_pod, namespace, timeout_seconds=60):
        seen.append(event["object"])
        if event["object"].status.phase == "Running":
            w.stop()
    assert all(isinstance(p, client.V1Pod) for p in seen) and seen[-1].metadata.name == "app"
    pods = lite.list_namespaced_pod(namespace, label_selector="app=demo")
    assert isinstance(pods, client.V1PodList) and [p.metadata.name for p in pods.items] == ["app"]

    def healthz() -> bytes:
        forward = portforward(
            lite.connect_get_namespaced_pod_portforward, "app", namespace, ports=str(APP_PORT)
        )
        sock = forward.socket(APP_PORT)
        sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        return data

    assert (
        b"200"
        in wait_for("the app through the port-forward", healthz, timeout=60).split(b"\r\n")[0]
    )


def test_the_generated_core_api_is_not_imported(kube_client: Any, namespace: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from kubernetes import config
        from pytest_livesandbox.backends.kube.coreapi import CoreApi
        api = config.new_client_from_config(config_file={os.environ["KUBECONFIG"]!r})
        lite = CoreApi(api)
        lite.read_namespace({namespace!r})
        lite.list_namespaced_pod({namespace!r})
        print("kubernetes.client.api.core_v1_api" in sys.modules)
        lite.list_namespaced_config_map({namespace!r})
        print("kubernetes.client.api.core_v1_api" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]

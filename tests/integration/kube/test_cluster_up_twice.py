"""``cluster/up`` on a running cluster changes nothing, and Services still route afterwards.

Issue 17: a second ``up`` used to rewrite ``kube-proxy-config.yaml``; kube-proxy exited on the
change and ClusterIP Services stopped working while ``up`` reported success. Here ``up`` runs
twice on the cluster the other tests use: every component keeps its pid, no config file is
rewritten, ``up`` ends with ``cluster/status``'s check, and a pod then reaches a ClusterIP Service.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.kube.test_cluster_smoke import (
    APP_PORT,
    create_deployment,
    ready_pods,
    run_script_pod,
    wait_for,
)

pytestmark = pytest.mark.kube
CLUSTER = Path(__file__).resolve().parents[3] / "cluster"
STATE = Path(os.environ.get("LIVESANDBOX_CLUSTER_STATE", "/var/lib/livesandbox-cluster"))
CONFIGS = (
    "kube-proxy-config.yaml",
    "kubelet-config.yaml",
    "containerd.toml",
    "Corefile",
    "router.yaml",
    "dnsmasq.conf",
    "kubeconfig-sa",
    "ci.env",
)


def component_pids() -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted((STATE / "run").glob("*.pid"))}


def config_stamps() -> dict[str, int]:
    return {name: (STATE / name).stat().st_mtime_ns for name in CONFIGS if (STATE / name).exists()}


def run_up() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER / "up")], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def cluster_owner(kube_client: Any) -> None:
    """``up`` needs root and this machine's cluster state (the kubeconfig is the one up wrote)."""
    if os.geteuid() != 0 or not (STATE / "run").is_dir():
        message = f"cluster/up needs root and a cluster started from {STATE} on this machine"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def test_up_twice_leaves_components_alone_and_services_route(
    cluster_owner: None, core: Any, apps: Any, namespace: str
) -> None:
    pids, stamps = component_pids(), config_stamps()
    assert "kube-proxy" in pids, f"no kube-proxy pid file in {STATE / 'run'}"
    for attempt in (1, 2):
        done = run_up()
        assert done.returncode == 0, f"up #{attempt} failed:\n{done.stderr[-3000:]}"
        assert "every component was running unchanged" in done.stderr, done.stderr[-3000:]
        assert "status: OK" in done.stderr, "up ends with cluster/status's check"
        assert done.stdout.strip().splitlines()[-1] == str(STATE / "kubeconfig-admin")
    assert component_pids() == pids, "a second up restarted a running component"
    assert config_stamps() == stamps, "a second up rewrote an unchanged config file"

    create_deployment(apps, namespace, "web")
    svc = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(port=80, target_port=APP_PORT, name="http")],
            ),
        ),
    )
    wait_for("a Ready pod of web", lambda: ready_pods(core, namespace, "web"))
    url = f"http://{svc.spec.cluster_ip}:80/healthz"
    script = (
        "import sys, time, urllib.request\n"
        "for i in range(60):\n"
        "    try:\n"
        f"        r = urllib.request.urlopen({url!r}, timeout=2)\n"
        "        print('status', r.status, flush=True); break\n"
        "    except Exception as e:\n"
        "        print('retry', e, flush=True); time.sleep(0.5)\n"
        "else:\n"
        "    sys.exit(1)\n"
    )
    phase, log = run_script_pod(core, namespace, "client", script)
    assert phase == "Succeeded", f"the ClusterIP Service did not answer after up twice: {log}"
    assert "status 200" in log
    assert component_pids()["kube-proxy"] == pids["kube-proxy"], "kube-proxy stayed up"

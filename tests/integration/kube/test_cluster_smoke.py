"""Smoke tests of the real single-node cluster of cluster/ (upstream Kubernetes from Go modules).

Each test works in its own namespace (fixture `namespace`), waits with deadlines, and runs under
pytest-xdist. Images come from cluster/build-images (no registry): imagePullPolicy Never.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

DEMO_IMAGE = "localhost/livesandbox/demo-app:dev"
POSTGRES_IMAGE = "localhost/livesandbox/postgres:15"
APP_PORT = 8000
pytestmark = pytest.mark.kube


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 120.0, interval: float = 0.5
) -> Any:
    """Poll check() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
            last_exc = None
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def demo_container(**overrides: Any) -> client.V1Container:
    spec: dict[str, Any] = dict(
        name="app",
        image=DEMO_IMAGE,
        image_pull_policy="Never",
        env=[
            client.V1EnvVar(name="HOST", value="0.0.0.0"),
            client.V1EnvVar(name="PORT", value=str(APP_PORT)),
            client.V1EnvVar(name="DATABASE_URL", value="postgresql://app:app@127.0.0.1:5432/app"),
        ],
        ports=[client.V1ContainerPort(container_port=APP_PORT, name="http")],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/healthz", port=APP_PORT),
            period_seconds=1,
            failure_threshold=1,
        ),
        resources=client.V1ResourceRequirements(
            limits={"memory": "256Mi"}, requests={"cpu": "10m", "memory": "32Mi"}
        ),
    )
    spec.update(overrides)
    return client.V1Container(**spec)


def create_deployment(apps: Any, ns: str, name: str, replicas: int = 1, **container: Any) -> None:
    labels = {"app": name}
    apps.create_namespaced_deployment(
        ns,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1DeploymentSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[demo_container(**container)], termination_grace_period_seconds=2
                    ),
                ),
            ),
        ),
    )


def ready_pods(core: Any, ns: str, app: str) -> list[Any]:
    pods = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and pod_ready(p)]


def run_script_pod(core: Any, ns: str, name: str, script: str) -> tuple[str, str]:
    """Run ``python3 -c script`` in a one-shot pod; return its final phase and its log."""
    create_pod(
        core,
        ns,
        name,
        demo_container(
            name=name, command=["python3", "-c", script], readiness_probe=None, ports=None
        ),
    )
    phase = wait_for(
        f"{name} pod to finish",
        lambda: (
            (p := core.read_namespaced_pod(name, ns).status.phase) in ("Succeeded", "Failed") and p
        ),
    )
    return str(phase), core.read_namespaced_pod_log(name, ns)


def create_pod(
    core: Any, ns: str, name: str, container: client.V1Container, restart: str = "Never"
) -> None:
    core.create_namespaced_pod(
        ns,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
            spec=client.V1PodSpec(
                containers=[container], restart_policy=restart, termination_grace_period_seconds=1
            ),
        ),
    )


def http_get_via_portforward(
    core: Any, ns: str, pod: str, port: int, path: str
) -> tuple[int, bytes]:
    """GET path on pod:port through the API server's port-forward (no kubectl, no node port)."""
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=str(port))
    try:
        sock = pf.socket(port)
        sock.setblocking(True)
        sock.settimeout(20)
        sock.sendall(
            f"GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = [
                    int(h.split(b":", 1)[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
        sock.close()
        error = pf.error(port)
        assert error is None, f"port-forward error: {error}"
    finally:
        pf.close()
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/"), (
        f"no HTTP response through port-forward: {data[:200]!r}"
    )
    return int(status_line.split()[1]), data.partition(b"\r\n\r\n")[2]


def test_deployment_pod_becomes_ready(core: Any, apps: Any, namespace: str) -> None:
    t0 = time.monotonic()
    create_deployment(apps, namespace, "web")
    pods = wait_for("a Ready pod of deployment web", lambda: ready_pods(core, namespace, "web"))
    elapsed = time.monotonic() - t0
    dep = wait_for(
        "deployment web available",
        lambda: (
            (d := apps.read_namespaced_deployment("web", namespace)).status.available_replicas == 1
            and d
        ),
    )
    assert dep.status.ready_replicas == 1
    pod = pods[0]
    assert pod.status.pod_ip, "ready pod has an IP from the CNI bridge"
    assert pod.spec.node_name, "pod was scheduled onto the node"
    print(
        f"deployment pod create->Ready: {elapsed:.1f}s on node {pod.spec.node_name}, "
        f"pod IP {pod.status.pod_ip}"
    )


def test_service_and_port_forward_reach_healthz(core: Any, apps: Any, namespace: str) -> None:
    create_deployment(apps, namespace, "web")
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(port=80, target_port=APP_PORT, name="http")],
            ),
        ),
    )
    pod = wait_for("a Ready pod of web", lambda: ready_pods(core, namespace, "web"))[0]

    # The Service's endpoints list the ready pod (endpoints controller, controller-manager).
    def endpoint_ips() -> list[str]:
        ep = core.read_namespaced_endpoints("web", namespace)
        return [a.ip for s in (ep.subsets or []) for a in (s.addresses or [])]

    assert pod.status.pod_ip in wait_for("service endpoints", endpoint_ips)
    status, body = wait_for(
        "GET /healthz through port-forward",
        lambda: (
            (
                r := http_get_via_portforward(
                    core, namespace, pod.metadata.name, APP_PORT, "/healthz"
                )
            )[0]
            == 200
            and r
        ),
        timeout=60,
    )
    assert status == 200
    assert body.strip(), "healthz answered with a body"


def test_clusterip_service_and_dns_route_between_pods(core: Any, apps: Any, namespace: str) -> None:
    """From another pod the Service answers by ClusterIP (kube-proxy) and DNS name (CoreDNS)."""
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
    urls = [
        f"http://{svc.spec.cluster_ip}:80/healthz",
        "http://web/healthz",
        f"http://web.{namespace}.svc.cluster.local/healthz",
    ]
    script = (
        "import socket, sys, time, urllib.request\n"
        f"fqdn = 'web.{namespace}.svc.cluster.local'\n"
        "print('resolved', socket.gethostbyname(fqdn), flush=True)\n"
        f"for url in {urls!r}:\n"
        "    for i in range(60):\n"
        "        try:\n"
        "            r = urllib.request.urlopen(url, timeout=2)\n"
        "            print('status', r.status, url, flush=True)\n"
        "            break\n"
        "        except Exception as e:\n"
        "            print('retry', url, e, flush=True); time.sleep(0.5)\n"
        "    else:\n"
        "        sys.exit(1)\n"
    )
    phase, log = run_script_pod(core, namespace, "client", script)
    assert phase == "Succeeded", f"client could not reach the service: {log}"
    assert f"resolved {svc.spec.cluster_ip}" in log
    for url in urls:
        assert f"status 200 {url}" in log


def test_pod_logs_readable(core: Any, namespace: str) -> None:
    marker = "livesandbox-log-marker-42"
    create_pod(
        core,
        namespace,
        "talker",
        demo_container(
            name="talker",
            command=["sh", "-c", f"echo {marker}; echo second line; exec sleep 3600"],
            readiness_probe=None,
            ports=None,
        ),
        restart="Always",
    )
    log = wait_for(
        "marker in pod logs",
        lambda: (t := core.read_namespaced_pod_log("talker", namespace)) and marker in t and t,
    )
    assert log.splitlines()[:2] == [marker, "second line"]


def test_eviction_replaced_by_replicaset(core: Any, apps: Any, namespace: str) -> None:
    create_deployment(apps, namespace, "web")
    old = wait_for("a Ready pod of web", lambda: ready_pods(core, namespace, "web"))[0]
    core.create_namespaced_pod_eviction(
        old.metadata.name,
        namespace,
        client.V1Eviction(
            metadata=client.V1ObjectMeta(name=old.metadata.name, namespace=namespace)
        ),
    )
    new = wait_for(
        "a Ready replacement pod",
        lambda: [
            p for p in ready_pods(core, namespace, "web") if p.metadata.uid != old.metadata.uid
        ],
    )[0]
    assert new.metadata.owner_references[0].kind == "ReplicaSet"

    def old_gone() -> bool:
        try:
            core.read_namespaced_pod(old.metadata.name, namespace)
        except ApiException as e:
            return bool(e.status == 404)
        return False

    wait_for("evicted pod deleted", old_gone, timeout=60)


def test_memory_limit_ends_oomkilled(core: Any, namespace: str) -> None:
    hog = "b = []\nwhile True:\n    b.append(bytearray(16 << 20))\n"
    create_pod(
        core,
        namespace,
        "hog",
        demo_container(
            name="hog",
            command=["python3", "-c", hog],
            readiness_probe=None,
            ports=None,
            resources=client.V1ResourceRequirements(
                limits={"memory": "64Mi"}, requests={"memory": "64Mi"}
            ),
        ),
    )

    def terminated() -> Any:
        statuses = core.read_namespaced_pod("hog", namespace).status.container_statuses or []
        return statuses and statuses[0].state.terminated

    term = wait_for("hog container terminated", terminated)
    assert term.reason == "OOMKilled", f"reason={term.reason} exit={term.exit_code}"
    assert term.exit_code == 137
    # restartPolicy Never: the pod ends Failed once the kubelet has synced the container's exit.
    wait_for(
        "hog pod Failed",
        lambda: core.read_namespaced_pod("hog", namespace).status.phase == "Failed",
        timeout=60,
    )


def test_failing_readiness_probe_flips_pod_unready(core: Any, namespace: str) -> None:
    create_pod(
        core,
        namespace,
        "flip",
        demo_container(
            name="flip",
            command=["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
            ports=None,
            readiness_probe=client.V1Probe(
                _exec=client.V1ExecAction(command=["cat", "/tmp/ready"]),
                period_seconds=1,
                failure_threshold=1,
            ),
        ),
        restart="Always",
    )
    wait_for("flip Ready", lambda: pod_ready(core.read_namespaced_pod("flip", namespace)))
    # Make the probe fail from inside the container (exec: API server -> kubelet -> containerd).
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "flip",
        namespace,
        command=["sh", "-c", "rm /tmp/ready && echo removed"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert "removed" in out
    pod = wait_for(
        "flip not Ready",
        lambda: (p := core.read_namespaced_pod("flip", namespace)) and not pod_ready(p) and p,
        timeout=60,
    )
    assert pod.status.phase == "Running", "the container keeps running; only readiness changed"
    assert pod.status.container_statuses[0].ready is False


def test_namespace_deletion_removes_everything(core: Any, apps: Any) -> None:
    import uuid

    ns = f"smoke-nsdel-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"livesandbox": "smoke"}))
    )
    try:
        wait_for(
            "default service account", lambda: core.read_namespaced_service_account("default", ns)
        )
        create_deployment(apps, ns, "web")
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v"})
        )
        core.create_namespaced_service(
            ns,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1ServiceSpec(
                    selector={"app": "web"},
                    ports=[client.V1ServicePort(port=80, target_port=APP_PORT)],
                ),
            ),
        )
        wait_for("a Ready pod", lambda: ready_pods(core, ns, "web"))
    finally:
        core.delete_namespace(ns)

    def ns_gone() -> bool:
        try:
            core.read_namespace(ns)
        except ApiException as e:
            return bool(e.status == 404)
        return False

    wait_for(f"namespace {ns} gone", ns_gone, timeout=180)
    assert core.list_namespaced_pod(ns).items == []
    assert apps.list_namespaced_deployment(ns).items == []
    assert core.list_namespaced_service(ns).items == []
    assert core.list_namespaced_config_map(ns).items == []


def test_demo_app_ready_against_postgres_then_unready_without_it(
    core: Any, apps: Any, namespace: str
) -> None:
    """Demo app reaches the postgres image by Service name; /readyz fails once the DB is gone."""
    labels = {"app": "postgres"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="postgres", labels=labels),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        termination_grace_period_seconds=2,
                        volumes=[
                            client.V1Volume(name="data", empty_dir=client.V1EmptyDirVolumeSource())
                        ],
                        containers=[
                            client.V1Container(
                                name="postgres",
                                image=POSTGRES_IMAGE,
                                image_pull_policy="Never",
                                env=[
                                    client.V1EnvVar(name="POSTGRES_PASSWORD", value="s3cret"),
                                    client.V1EnvVar(name="POSTGRES_USER", value="app"),
                                    client.V1EnvVar(name="POSTGRES_DB", value="app"),
                                ],
                                ports=[client.V1ContainerPort(container_port=5432)],
                                volume_mounts=[
                                    client.V1VolumeMount(
                                        name="data", mount_path="/var/lib/postgresql/data"
                                    )
                                ],
                                readiness_probe=client.V1Probe(
                                    tcp_socket=client.V1TCPSocketAction(port=5432), period_seconds=1
                                ),
                            )
                        ],
                    ),
                ),
            ),
        ),
    )
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="postgres"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=5432, target_port=5432)]
            ),
        ),
    )
    dsn = "postgresql://app:s3cret@postgres:5432/app"
    create_deployment(
        apps,
        namespace,
        "web",
        env=[
            client.V1EnvVar(name="HOST", value="0.0.0.0"),
            client.V1EnvVar(name="PORT", value=str(APP_PORT)),
            client.V1EnvVar(name="DATABASE_URL", value=dsn),
        ],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/readyz", port=APP_PORT),
            period_seconds=1,
            timeout_seconds=3,
            failure_threshold=1,
        ),
    )
    pod = wait_for(
        "web Ready (its /readyz reached postgres)",
        lambda: ready_pods(core, namespace, "web"),
        timeout=180,
    )[0]
    status, _ = http_get_via_portforward(core, namespace, pod.metadata.name, APP_PORT, "/readyz")
    assert status == 200

    apps.patch_namespaced_deployment_scale("postgres", namespace, {"spec": {"replicas": 0}})
    wait_for(
        "web not Ready once postgres is gone",
        lambda: not pod_ready(core.read_namespaced_pod(pod.metadata.name, namespace)),
        timeout=90,
    )
    status, _ = http_get_via_portforward(core, namespace, pod.metadata.name, APP_PORT, "/readyz")
    assert status != 200
    status, _ = http_get_via_portforward(core, namespace, pod.metadata.name, APP_PORT, "/healthz")
    assert status == 200, "liveness endpoint does not depend on the database"


def test_pod_reaches_api_server_with_its_service_account(core: Any, namespace: str) -> None:
    """In-cluster config works: kubernetes.default.svc, the mounted CA and the SA token."""
    script = (
        "import json, ssl, urllib.error, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(sa + '/token').read()\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "def get(path):\n"
        "    req = urllib.request.Request('https://kubernetes.default.svc' + path,\n"
        "                                 headers={'Authorization': 'Bearer ' + token})\n"
        "    try:\n"
        "        r = urllib.request.urlopen(req, context=ctx, timeout=5)\n"
        "        return r.status, json.loads(r.read())\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code, json.loads(e.read())\n"
        "print('version', *get('/version'))\n"
        "print('pods', *get('/api/v1/namespaces/kube-system/pods'))\n"
    )
    phase, log = run_script_pod(core, namespace, "incluster", script)
    assert phase == "Succeeded", log
    assert "version 200" in log and "v1.34" in log
    # Authenticated as the pod's service account, which RBAC does not let list kube-system pods.
    assert "pods 403" in log
    assert f"system:serviceaccount:{namespace}:default" in log


def test_app_allocating_past_its_limit_is_oomkilled_and_restarted(
    core: Any, apps: Any, namespace: str
) -> None:
    """The demo app's /alloc past the memory limit: OOMKilled, restarted, Ready again."""
    create_deployment(
        apps,
        namespace,
        "web",
        resources=client.V1ResourceRequirements(
            limits={"memory": "128Mi"}, requests={"cpu": "10m", "memory": "64Mi"}
        ),
    )
    pod = wait_for("a Ready pod of web", lambda: ready_pods(core, namespace, "web"))[0]
    try:
        http_get_via_portforward(core, namespace, pod.metadata.name, APP_PORT, "/alloc?mb=400")
    except Exception:
        pass  # expected: the connection dies with the OOM-killed process

    def oom_restarted() -> Any:
        status = core.read_namespaced_pod(pod.metadata.name, namespace).status
        cs = (status.container_statuses or [None])[0]
        last = cs and cs.last_state and cs.last_state.terminated
        return last if last and cs.restart_count >= 1 else None

    last = wait_for("container restarted after an OOM kill", oom_restarted)
    assert last.reason == "OOMKilled", f"reason={last.reason} exit={last.exit_code}"
    wait_for(
        "the same pod Ready again after the restart",
        lambda: pod_ready(core.read_namespaced_pod(pod.metadata.name, namespace)),
        timeout=90,
    )

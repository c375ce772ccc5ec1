"""Kube start-up errors read like local's, and app restarts and evictions outside chaos are
reported: the real cluster.

The app is a real one in the style of uvicorn: it prints its DATABASE_URL and writes one
access-log line per request, so every readiness probe (the kubelet's and ours) leaves a line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import IsolatedState

pytestmark = pytest.mark.kube
POSTGRES = "--sandbox-image=postgres=localhost/livesandbox/postgres:15"

APP = """
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting with", os.environ["DATABASE_URL"], flush=True)
READY = os.environ.get("READY") == "1"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            print("fatal: asked to crash", flush=True)
            os._exit(4)
        self.send_response(200 if READY else 503)
        self.end_headers()
        self.wfile.write(b"ok")


server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(float(os.environ.get("CRASH_AFTER", "100000")))
print("fatal: cannot reach the cache at redis://cache:6379", flush=True)
sys.exit(3)
"""


def manifest(env: dict[str, str]) -> str:
    pairs = "".join(
        f"\n            - {{name: {k}, value: {json.dumps(v)}}}" for k, v in env.items()
    )
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {{app.kubernetes.io/component: api}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/component: api}}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/component: api}}
    spec:
      containers:
        - name: api
          image: localhost/livesandbox/demo-app:dev
          imagePullPolicy: Never
          command: ["python3", "-u", "-c", {json.dumps(APP)}]
          env:
            - name: DATABASE_URL
              valueFrom: {{secretKeyRef: {{name: livesandbox-db, key: url}}}}{pairs}
          ports: [{{name: http, containerPort: 8000}}]
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {{app.kubernetes.io/component: api}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""


def run(pytester: pytest.Pytester, env: dict[str, str], *args: str) -> pytest.RunResult:
    (pytester.path / "k8s").mkdir()
    (pytester.path / "k8s" / "app.yaml").write_text(manifest(env))
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--sandbox=kube", "--sandbox-manifests=k8s",
        POSTGRES, "--sandbox-health-path=/readyz", "--sandbox-startup-timeout=120s", *args,
    )  # fmt: skip


def test_crashing_app_shows_its_last_words_without_probe_lines(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = run(pytester, {"CRASH_AFTER": "5"}, "--sandbox-namespace-prefix=crashnoisy")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*AppCrashed: the app in namespace crashnoisy-* cannot start: container api exited "
            "with code 3 (Error)",
            "log tail of api-*/api:",
            "  starting with postgresql://app:***@*",
            "  fatal: cannot reach the cache at redis://cache:6379",
            "Hint: the container exits during start-up*",
        ]
    )
    assert "GET /readyz" not in out  # the kubelet's probes and ours: not the app's words
    assert "log tail of livesandbox-postgres" not in out  # ready components are no suspects
    # A probe failing every second is one line with a count, not eight lines of the same.
    unhealthy = [line for line in out.splitlines() if "Unhealthy Pod/api-" in line]
    assert len(unhealthy) <= 1, unhealthy
    assert not re.search(r"postgresql://app:(?!\*\*\*)[^@]+@", out), out
    isolated_state.assert_clean()


RESTART = """
import time

import httpx
from kubernetes import client, config


def restarts(namespace):
    api = client.CoreV1Api(config.new_client_from_config())
    pods = api.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=api")
    return [(c.restart_count, c.ready) for p in pods.items for c in p.status.container_statuses]


def test_crash(livesandbox, live_http):
    with pytest.raises(httpx.HTTPError):
        live_http.get("/crash")  # the app exits; the kubelet starts it again
    deadline = time.monotonic() + 90
    while restarts(livesandbox.info.namespace) != [(1, True)]:
        assert time.monotonic() < deadline, restarts(livesandbox.info.namespace)
        time.sleep(0.5)


def test_evicted(livesandbox, live_http):
    # Evicted from outside (a node drain): the Deployment replaces the pod.
    namespace = livesandbox.info.namespace
    api = client.CoreV1Api(config.new_client_from_config())
    selector = "app.kubernetes.io/component=api"
    (pod,) = api.list_namespaced_pod(namespace, label_selector=selector).items
    api.create_namespaced_pod_eviction(
        pod.metadata.name,
        namespace,
        client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name)),
    )
    deadline = time.monotonic() + 90
    while True:
        pods = api.list_namespaced_pod(namespace, label_selector=selector).items
        fresh = [p for p in pods if p.metadata.name != pod.metadata.name]
        statuses = [c for p in fresh for c in (p.status.container_statuses or [])]
        if len(pods) == 1 and statuses and all(c.ready for c in statuses):
            break
        assert time.monotonic() < deadline, [p.metadata.name for p in pods]
        time.sleep(0.5)


def test_quiet(live_http):
    assert live_http.get("/readyz").status_code == 200
"""


def test_app_restart_outside_chaos_is_reported(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    pytester.makepyfile(test_x="import pytest\n" + RESTART)
    result = run(
        pytester, {"READY": "1"}, "--sandbox-namespace-prefix=restarts", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "the app restarted 1x during test_x.py::test_crash*",
            "the app restarted 1x during test_x.py::test_evicted*",
        ]
    )
    lines = (pytester.path / "r.jsonl").read_text().splitlines()
    finished = [e for e in map(json.loads, lines) if e["event"] == "test_finished"]
    assert [e.get("app_restarts") for e in finished] == [1, 1, None]
    isolated_state.assert_clean()

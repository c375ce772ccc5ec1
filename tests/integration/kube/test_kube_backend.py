"""--sandbox=kube end to end on the real cluster: pytester runs of conftest_examples/kube.

Each inner run makes (at most) one sandbox namespace; the outer test checks outcomes, messages
and that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from pytest_livesandbox.backends.kube.names import MANAGED_BY_LABEL, SANDBOX_ID_LABEL
from tests.conftest import REPO, IsolatedState

pytestmark = pytest.mark.kube
POSTGRES = "--sandbox-image=postgres=localhost/livesandbox/postgres:15"
# Another build of the demo app for the example runs (default: the manifests' own :dev image).
DEMO_IMAGE = os.environ.get("LIVESANDBOX_TEST_DEMO_IMAGE")


@pytest.fixture
def kube_example(pytester: pytest.Pytester, kube_client: Any) -> pytest.Pytester:
    """pytester folder holding conftest_examples/kube (manifest path made absolute)."""
    shutil.copytree(REPO / "conftest_examples" / "kube", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    text = ini.read_text().replace("../../examples/demo_app/k8s", str(manifests))
    if DEMO_IMAGE:
        text = text.replace("postgres:15\n", f"postgres:15\n    backend={DEMO_IMAGE}\n")
    ini.write_text(text)
    return pytester


def only(pytester: pytest.Pytester, **files: str) -> None:
    """Replace the example's tests by ``files`` (its pytest.ini and conftest.py stay)."""
    (pytester.path / "test_demo_app.py").unlink()
    pytester.makepyfile(**files)


NAMESPACE_SHAPE = """
import os

from kubernetes import client, config


def test_namespace_is_labelled_and_fenced(livesandbox):
    api = config.new_client_from_config(os.environ["KUBECONFIG"])
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    ns = core.read_namespace(livesandbox.info.namespace)
    labels = ns.metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "pytest-livesandbox"
    assert labels["livesandbox/id"] == livesandbox.info.id
    assert labels["livesandbox/run-id"] == livesandbox.info.run_id
    assert labels["livesandbox/owner"]
    assert ns.metadata.annotations["livesandbox/expires-at"].endswith("Z")
    name = livesandbox.info.namespace
    quota = core.read_namespaced_resource_quota("livesandbox-quota", name)
    assert quota.spec.hard["pods"] == "30"
    assert core.read_namespaced_limit_range("livesandbox-limits", name).spec.limits
    policies = {p.metadata.name for p in net.list_namespaced_network_policy(name).items}
    assert policies == {
        "livesandbox-default-deny", "livesandbox-db-from-app", "livesandbox-ingress-to-app"
    }
    secret = core.read_namespaced_secret("livesandbox-db", name)
    assert set(secret.data) >= {"url", "host", "port", "user", "password", "dbname"}
"""


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def namespace_exists(core: Any, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_example_suite_runs_in_a_fenced_namespace_and_leaves_nothing(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    kube_example.makepyfile(test_namespace_shape=NAMESPACE_SHAPE)
    result = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=9)
    result.stdout.re_match_lines([r".*sandbox \w+ \(kube\) ready in [\d.]+s, torn down in.*"])
    started = events(kube_example.path / "r.jsonl")[0]
    namespace = started["sandbox"]["namespace"]
    assert namespace.startswith("sandbox-")
    assert not namespace_exists(core, namespace)
    assert started["sandbox"]["db"]["password"] == ""
    isolated_state.assert_clean()


def test_broken_image_fails_fast_with_the_reason(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    only(
        kube_example, test_x="def test_a(live_url):\n    pass\n\n\ndef test_b(live_db):\n    pass\n"
    )
    began = time.monotonic()
    result = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        POSTGRES,
        "--sandbox-image=backend=localhost/livesandbox/no-such-image:1",
        "--sandbox-namespace-prefix=brokenimg",
        "--sandbox-report=r.jsonl",
    )  # fmt: skip
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*RolloutFailed: the app in namespace brokenimg-* cannot start: container backend: "
            "ErrImageNeverPull*",
            "*pod backend-*",
            "*last events:*",
            "*Hint: the image cannot be used*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert time.monotonic() - began < 80  # not the 90 s startup timeout of the example
    namespace = (
        "brokenimg-"
        + events(kube_example.path / "r.jsonl")[0]["error"].split("brokenimg-")[1].split(" ")[0]
    )
    assert not namespace_exists(core, namespace)
    isolated_state.assert_clean()


CRASHING_APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app.kubernetes.io/component: api}
spec:
  selector: {matchLabels: {app.kubernetes.io/component: api}}
  template:
    metadata:
      labels: {app.kubernetes.io/component: api}
    spec:
      containers:
        - name: api
          image: localhost/livesandbox/demo-app:dev
          imagePullPolicy: Never
          command:
            - python3
            - -c
            - "import sys; print('config error: SECRET_KEY is not set', flush=True); sys.exit(3)"
          ports: [{containerPort: 8000}]
"""


def test_crashing_app_fails_fast_with_its_log(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    (pytester.path / "k8s").mkdir()
    (pytester.path / "k8s" / "app.yaml").write_text(CRASHING_APP)
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "--sandbox=kube",
        "--sandbox-manifests=k8s",
        POSTGRES,
        "--sandbox-namespace-prefix=crashapp",
        "--sandbox-startup-timeout=90s",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*AppCrashed: the app in namespace crashapp-* cannot start: container api exited "
            "with code 3 (Error)*",
            "*log tail of api-*/api:*",
            "*config error: SECRET_KEY is not set*",
            "*Hint: the container exits during start-up*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    isolated_state.assert_clean()


def test_keep_then_attach_reuses_and_never_deletes_then_down_removes(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    only(
        kube_example,
        test_x="""
        def test_write(live_http):
            assert live_http.post("/items", json={"name": "kept"}).status_code == 201
        """,
    )
    kept = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox-keep", "--sandbox-report=r.jsonl"
    )
    kept.assert_outcomes(passed=1)
    namespace = events(kube_example.path / "r.jsonl")[0]["sandbox"]["namespace"]
    try:
        kept.stdout.fnmatch_lines(["*kept running*", "*remove it with: livesandbox down *"])
        assert namespace_exists(core, namespace)
        kube_example.makepyfile(
            test_x="""
            def test_sees_the_kept_row(live_http, live_db):
                assert live_http.get("/items/1").json()["name"] == "kept"
                row = live_db.execute("select name from items").fetchone()
                assert row == ("kept",)
            """
        )
        attached = kube_example.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--sandbox-attach={namespace}"
        )
        attached.assert_outcomes(passed=1)
        assert namespace_exists(core, namespace)
        listed = cli("ls")
        assert f"namespace/{namespace}" in listed.stdout, listed.stderr
    finally:
        down = cli("down", namespace)
    assert down.returncode == 0, down.stderr
    assert f"namespace/{namespace}" in down.stdout and "removed " in down.stdout
    assert not namespace_exists(core, namespace)
    isolated_state.assert_clean()


def test_namespaces_without_our_label_are_never_deleted(core: Any) -> None:
    from kubernetes import client

    from pytest_livesandbox.backends.kube.backend import KubeBackend
    from pytest_livesandbox.backends.kube.names import sandbox_labels
    from pytest_livesandbox.backends.kube.namespace import namespace_body
    from pytest_livesandbox.errors import UnsafeTarget
    from pytest_livesandbox.info import SandboxInfo

    suffix = uuid.uuid4().hex[:8]
    foreign = f"sandbox-foreign-{suffix}"
    ours_expired = f"sandbox-expired-{suffix}"
    body = namespace_body(foreign, {"team": "payments"}, ttl=-3600)  # expired, but not ours
    core.create_namespace(body)
    owner = f"gc-test-{suffix}"
    core.create_namespace(namespace_body(ours_expired, sandbox_labels(suffix, "r", owner), ttl=-60))
    try:
        # Scoped to this test: a bare `gc --older-than 1s` would reap other runs' live sandboxes.
        gc = cli("gc", "--backend", "kube", "--owner", owner, "--older-than", "1s")
        assert f"removing {suffix} (kube, expired)" in gc.stdout, gc.stdout + gc.stderr
        assert foreign not in gc.stdout
        down = cli("down", foreign)
        assert down.returncode == 1 and "nothing was touched" in down.stderr
        info = SandboxInfo(
            id=suffix,
            backend="kube",
            run_id="r",
            owner="o",
            created_at=0,
            namespace=foreign,
            extra={"created_namespace": True},
        )
        with pytest.raises(UnsafeTarget, match="was not made by pytest-livesandbox"):
            KubeBackend().teardown(info)
        assert namespace_exists(core, foreign)
        assert not namespace_exists(core, ours_expired)
        # Labelled as ours, but another sandbox's: teardown of this one leaves it alone too.
        core.patch_namespace(
            foreign,
            {
                "metadata": {
                    "labels": {MANAGED_BY_LABEL: "pytest-livesandbox", SANDBOX_ID_LABEL: "other"}
                }
            },
        )
        with pytest.raises(UnsafeTarget, match="belongs to sandbox 'other'"):
            KubeBackend().teardown(info)
        assert namespace_exists(core, foreign)
    finally:
        for name in (foreign, ours_expired):
            try:
                core.delete_namespace(name, body=client.V1DeleteOptions(grace_period_seconds=0))
            except ApiException as exc:
                if exc.status != 404:
                    raise


def test_ctrl_c_during_provisioning_removes_the_namespace(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    from pytest_livesandbox.backends.kube.names import OWNED_SELECTOR

    prefix = f"ctrlc{uuid.uuid4().hex[:4]}"
    only(kube_example, test_x="def test_a(live_url):\n    pass\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         f"--sandbox-namespace-prefix={prefix}"],
        cwd=kube_example.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def mine() -> list[str]:
        found = core.list_namespace(label_selector=OWNED_SELECTOR).items
        return [n.metadata.name for n in found if n.metadata.name.startswith(prefix)]

    deadline = time.monotonic() + 60
    while not mine():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    assert mine() == []
    isolated_state.assert_clean()


def test_public_url_from_the_template_becomes_the_endpoint(
    kube_example: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    # Stands in for the ingress: answers every path, so the public URL is "up".
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Ingress(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingress)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        only(
            kube_example,
            test_x="""
            def test_endpoint(livesandbox, live_http):
                info = livesandbox.info
                assert info.endpoint.endswith(f"/sandbox-{info.id}.{info.namespace}")
                assert live_http.get("/readyz").text.endswith("/readyz")
                assert info.extra["port_forward"].startswith("http://127.0.0.1:")
            """,
        )
        result = kube_example.runpytest_subprocess(
            "-p", "no:cacheprovider",
            f"--sandbox-url-template=http://127.0.0.1:{server.server_port}/sandbox-{{id}}.{{namespace}}",
        )  # fmt: skip
        result.assert_outcomes(passed=1)
    finally:
        server.shutdown()
    isolated_state.assert_clean()


OVERLAY_CHECK = """
from kubernetes import client, config


def test_the_overlay_patch_is_deployed(livesandbox, live_http):
    api = config.new_client_from_config()
    deployment = client.AppsV1Api(api).read_namespaced_deployment(
        "backend", livesandbox.info.namespace
    )
    assert deployment.metadata.annotations["overlay"] == "applied-by-kustomize"
    assert live_http.get("/healthz").status_code == 200
"""


def test_kustomize_overlay_with_patches_is_built_and_deployed(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    # `patches` needs a real kustomize (kubectl kustomize or kustomize build); CI builds it from
    # its Go module (cluster/build-kustomize) so this path runs there, not just plain resources.
    tool = shutil.which("kustomize") or shutil.which("kubectl")
    if tool is None:
        message = "neither kustomize nor kubectl on PATH (bash cluster/build-kustomize)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes", "on"}:
            pytest.fail(message)
        pytest.skip(message)
    overlay = kube_example.path / "overlay"
    overlay.mkdir()
    base = REPO / "examples" / "demo_app" / "k8s"
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(base, overlay)}\n"
        "patches:\n  - target: {kind: Deployment, name: backend}\n"
        "    patch: |-\n"
        "      - op: add\n        path: /metadata/annotations\n"
        "        value: {overlay: applied-by-kustomize}\n"
    )
    only(kube_example, test_overlay=OVERLAY_CHECK)
    result = kube_example.runpytest_subprocess(POSTGRES, f"--sandbox-manifests={overlay}")
    result.assert_outcomes(passed=1)
    isolated_state.assert_clean()

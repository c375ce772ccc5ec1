"""--sandbox-deployer=argocd on the real cluster: pytester runs of conftest_examples/argocd.

Argo CD (cluster/argocd-up) syncs the demo app from the in-cluster git server's branches:
``main`` (the demo app), ``broken`` (a ConfigMap the API server refuses) and ``wrong-image``
(an image no node has, a 10 s progress deadline). Each inner run makes one sandbox namespace and
one Application; the outer test checks outcomes, messages and that both are gone afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.conftest import REPO, IsolatedState, changed_demo_app

pytestmark = pytest.mark.kube
ARGOCD_NS = "argocd"


@pytest.fixture
def argocd_example(pytester: pytest.Pytester, kube_client: Any) -> pytest.Pytester:
    """pytester folder holding conftest_examples/argocd; Argo CD must be installed."""
    try:
        client.ApiextensionsV1Api(kube_client).read_custom_resource_definition(
            "applications.argoproj.io"
        )
    except ApiException as exc:
        pytest.fail(
            f"Argo CD is not installed in the cluster (run cluster/argocd-up): {exc.reason}"
        )
    shutil.copytree(REPO / "conftest_examples" / "argocd", pytester.path, dirs_exist_ok=True)
    return pytester


def only(pytester: pytest.Pytester, **files: str) -> None:
    """Replace the example's tests by ``files`` (its pytest.ini and conftest.py stay)."""
    (pytester.path / "test_demo_app.py").unlink()
    pytester.makepyfile(**files)


def first_event(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text().splitlines()[0]))


def assert_gone(kube_client: Any, namespace: str) -> None:
    """Neither the sandbox namespace nor its Application is left."""
    custom = client.CustomObjectsApi(kube_client)
    for read in (
        lambda: client.CoreV1Api(kube_client).read_namespace(namespace),
        lambda: custom.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", ARGOCD_NS, "applications", namespace
        ),
    ):
        with pytest.raises(ApiException) as caught:
            read()
        assert caught.value.status == 404


def namespace_in(text: str, prefix: str = "sandbox-") -> str:
    return prefix + text.split(f"argocd/{prefix}", 1)[1].split(" ", 1)[0].split(":", 1)[0]


def test_example_suite_deployed_by_argocd_leaves_nothing(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--sandbox-report=r.jsonl", "--sandbox-html=r.html"
    )  # fmt: skip
    result.assert_outcomes(passed=10)
    result.stdout.re_match_lines(
        [
            r".*sandbox \w+ \(kube\) ready in [\d.]+s, torn down in.*",
            r"stages: sync [\d.]+s; ready at: namespace [\d.]+s, db [\d.]+s, synced [\d.]+s, "
            r"healthy [\d.]+s, app [\d.]+s",
            r"Argo CD Application argocd/sandbox-\w+ at [0-9a-f]{12}",
        ]
    )
    sandbox = first_event(argocd_example.path / "r.jsonl")["sandbox"]
    assert sandbox["extra"]["git"]["revision"] == "main"
    assert len(sandbox["extra"]["synced_revision"]) == 40
    html = (argocd_example.path / "r.html").read_text()
    assert f"synced revision <code>{sandbox['extra']['synced_revision']}</code>" in html
    assert ">sync</text>" in html and ">healthy</text>" in html  # the bring-up chart's lanes
    assert_gone(kube_client, sandbox["namespace"])
    isolated_state.assert_clean()


def test_broken_manifest_fails_the_sync_with_its_reason(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox-git-revision=broken"
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*RolloutFailed: Argo CD Application argocd/sandbox-* failed to sync:*",
            "*sync OutOfSync, health *, operation Failed at revision *",
            '*operation: one or more objects failed to apply, reason: ConfigMap "Not_A_Valid_Name" '
            "is invalid*",
            "*sync result:*",
            "*ConfigMap/Not_A_Valid_Name: SyncFailed: *metadata.name: Invalid value*",
            "*Deployment/backend: Synced*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert_gone(kube_client, namespace_in(result.stdout.str()))
    isolated_state.assert_clean()


def test_wrong_image_is_degraded_health_with_the_pods_reason(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox-git-revision=wrong-image"
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*RolloutFailed: Argo CD Application argocd/sandbox-* synced but its health is "
            "Degraded:*",
            "*worst resource: Deployment/backend health Degraded: *exceeded its progress deadline*",
            "*pod backend-*",
            "*container backend: waiting: ErrImageNeverPull*no-such-image*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert_gone(kube_client, namespace_in(result.stdout.str()))
    isolated_state.assert_clean()


LIVE_IMAGE = """
import os

from kubernetes import client, config


def test_the_override_is_what_runs(livesandbox, live_http):
    assert live_http.get("/readyz").status_code == 200
    api = config.new_client_from_config(os.environ["KUBECONFIG"])
    deployment = client.AppsV1Api(api).read_namespaced_deployment(
        "backend", livesandbox.info.namespace
    )
    assert deployment.spec.template.spec.containers[0].image == "localhost/livesandbox/demo-app:dev"
"""


def test_image_override_reaches_the_synced_workload(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    # The wrong-image branch names an image no node has; the override (a kustomize patch of
    # the Application) replaces it, so the sandbox comes up.
    only(argocd_example, test_x=LIVE_IMAGE)
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "--sandbox-git-revision=wrong-image",
        "--sandbox-image=backend=localhost/livesandbox/demo-app:dev",
        "--sandbox-image=postgres=localhost/livesandbox/postgres:15",
        "--sandbox-report=r.jsonl",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    assert_gone(kube_client, first_event(argocd_example.path / "r.jsonl")["sandbox"]["namespace"])
    isolated_state.assert_clean()


def test_missing_argocd_namespace_names_the_fix(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "--sandbox-argocd-namespace=no-argocd-here",
        "--sandbox-namespace-prefix=noargo",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*--sandbox-argocd-namespace no-argocd-here: no such namespace in cluster *; install "
            "Argo CD into the cluster (our CI cluster: `sudo bash cluster/argocd-up`)*"
        ]
    )
    # Checked before anything is made: no sandbox namespace was created.
    namespaces = client.CoreV1Api(kube_client).list_namespace().items
    assert not [ns for ns in namespaces if ns.metadata.name.startswith("noargo-")]
    isolated_state.assert_clean()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_kept_sandbox_lists_its_application_attach_leaves_it_down_removes_both(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    kept = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox-keep", "--sandbox-report=r.jsonl"
    )  # fmt: skip
    kept.assert_outcomes(passed=1)
    namespace = first_event(argocd_example.path / "r.jsonl")["sandbox"]["namespace"]
    custom = client.CustomObjectsApi(kube_client)

    def application() -> dict[str, Any]:
        return dict(
            custom.get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", ARGOCD_NS, "applications", namespace
            )
        )

    try:
        assert application()["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
            "pytest-livesandbox"
        )
        attached = argocd_example.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--sandbox-attach={namespace}"
        )  # fmt: skip
        attached.assert_outcomes(passed=1)
        assert "deletionTimestamp" not in application()["metadata"]  # never touched
        listed = cli("ls")
        assert f"namespace/{namespace}" in listed.stdout, listed.stderr
        assert f"Argo CD Application argocd/{namespace}" in listed.stdout
    finally:
        down = cli("down", namespace)
    assert down.returncode == 0, down.stderr
    assert_gone(kube_client, namespace)
    isolated_state.assert_clean()


SEES_THE_BUILD = """
import os

from kubernetes import client, config


def test_the_built_digest_runs(live_http, livesandbox):
    assert live_http.get("/healthz").json()["build"] == "{marker}"
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    deployment = client.AppsV1Api(api).read_namespaced_deployment(
        "backend", livesandbox.info.namespace
    )
    container = deployment.spec.template.spec.containers[0]
    assert container.image == livesandbox.info.extra["digests"]["backend"]
    assert "@sha256:" in container.image and container.image_pull_policy == "IfNotPresent"
"""


def test_built_image_digest_is_what_argocd_deploys(
    argocd_example: pytest.Pytester,
    isolated_state: IsolatedState,
    kube_client: Any,
    registry_addr: str,
) -> None:
    marker = f"a{uuid.uuid4().hex[:10]}"
    app = changed_demo_app(argocd_example.path / "app", marker)
    only(argocd_example, test_x=SEES_THE_BUILD.replace("{marker}", marker))
    registry = f"{registry_addr}/lsbtest"
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        f"--sandbox-build=backend={app}",
        f"--sandbox-build-arg=BASE={registry_addr}/livesandbox/python-psycopg:bookworm",
        f"--sandbox-registry={registry}",
        "--sandbox-report=r.jsonl",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    sandbox = first_event(argocd_example.path / "r.jsonl")["sandbox"]
    assert sandbox["extra"]["digests"]["backend"].startswith(f"{registry}/backend@sha256:")
    assert_gone(kube_client, sandbox["namespace"])
    isolated_state.assert_clean()
    build = sandbox["extra"]["builds"]["backend"]
    subprocess.run(["docker", "rmi", f"{registry}/backend:{build['tag']}"], capture_output=True)


def test_application_whose_namespace_is_gone_is_listed_and_reaped_by_gc(
    argocd_example: pytest.Pytester,
    isolated_state: IsolatedState,
    kube_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = f"argocd-orphan-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CI_JOB_ID", owner.split("-", 2)[2])  # the inner run's owner: this test
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    kept = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox-keep", "--sandbox-report=r.jsonl"
    )  # fmt: skip
    kept.assert_outcomes(passed=1)
    sandbox = first_event(argocd_example.path / "r.jsonl")["sandbox"]
    namespace, job_owner = sandbox["namespace"], sandbox["owner"]
    core = client.CoreV1Api(kube_client)
    try:
        # The namespace goes by another hand (kubectl, a reaper): the Application stays behind.
        core.delete_namespace(namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                core.read_namespace(namespace)
            except ApiException as exc:
                if exc.status == 404:
                    break
            time.sleep(0.5)
        listed = cli("ls")
        assert f"Argo CD Application argocd/{namespace}" in listed.stdout, listed.stderr
        assert "orphaned" in listed.stdout
    finally:
        gc = cli("gc", "--backend", "kube", "--owner", job_owner)
    assert f"removing {sandbox['id']} (kube, orphaned)" in gc.stdout, gc.stdout + gc.stderr
    assert_gone(kube_client, namespace)
    isolated_state.assert_clean()


def test_override_of_a_component_argocd_did_not_sync_is_an_error(
    argocd_example: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    only(argocd_example, test_x="def test_a(live_url):\n    pass\n")
    result = argocd_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "--sandbox-image=frontend=localhost/livesandbox/demo-app:dev",
        "--sandbox-image=postgres=localhost/livesandbox/postgres:15",
        "--sandbox-namespace-prefix=argounknown",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ConfigError: --sandbox-image/--sandbox-build frontend=...: no workload Argo CD "
            "synced from git://* (k8s) has that app.kubernetes.io/component label or name; "
            "known: backend*"
        ]
    )
    names = [ns.metadata.name for ns in client.CoreV1Api(kube_client).list_namespace().items]
    apps = client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", ARGOCD_NS, "applications"
    )["items"]
    left = [
        n for n in [*names, *(a["metadata"]["name"] for a in apps)] if n.startswith("argounknown-")
    ]
    assert left == []
    isolated_state.assert_clean()

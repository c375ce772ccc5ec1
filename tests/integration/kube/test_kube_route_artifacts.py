"""Public routes, per-test artifacts and bring-up refusals on the real cluster (kube and gke).

The cluster of cluster/ has a router (Traefik: Gateway livesandbox-router/dev and IngressClass
traefik), a wildcard certificate for *.dev.livesandbox.test from its dev CA (in the system trust
store; SSL_CERT_FILE from ci.env for Python clients) and dnsmasq resolving that domain.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from pytest_livesandbox.backends.kube.names import SANDBOX_ID_LABEL
from tests.conftest import REPO, IsolatedState

pytestmark = pytest.mark.kube
CI_ENV = (
    Path(os.environ.get("LIVESANDBOX_CLUSTER_STATE", "/var/lib/livesandbox-cluster")) / "ci.env"
)
DOMAIN = "dev.livesandbox.test"
TEMPLATE = f"--sandbox-url-template=https://sb-{{id}}.{DOMAIN}"


@pytest.fixture
def ci_env(monkeypatch: pytest.MonkeyPatch, kube_client: Any) -> None:
    """The CA bundle a CI job of ours has (cluster/up writes it to ci.env)."""
    for line in CI_ENV.read_text().splitlines() if CI_ENV.exists() else []:
        key, _, value = line.partition("=")
        if key == "SSL_CERT_FILE":
            monkeypatch.setenv(key, value)


def example(pytester: pytest.Pytester, name: str, tests: str | None = None) -> None:
    shutil.copytree(REPO / "conftest_examples" / name, pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    ini.write_text(ini.read_text().replace("../../examples/demo_app/k8s", str(manifests)))
    if tests is not None:
        (pytester.path / "test_demo_app.py").unlink()
        pytester.makepyfile(test_x=tests)


def run_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_no_namespace(core: Any, sandbox_id: str | None = None) -> None:
    if sandbox_id:
        left = core.list_namespace(label_selector=f"{SANDBOX_ID_LABEL}={sandbox_id}").items
        assert all(ns.status.phase == "Terminating" for ns in left), left


def test_gke_example_runs_over_the_routed_https_url(
    pytester: pytest.Pytester, isolated_state: IsolatedState, ci_env: None, core: Any
) -> None:
    example(pytester, "gke")
    result = pytester.runpytest_subprocess("-n", "2", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=9)
    started = run_events(pytester.path / "r.jsonl")[0]["sandbox"]
    assert started["backend"] == "gke"
    assert started["endpoint"] == f"https://sandbox-{started['id']}.{DOMAIN}"
    assert started["timings"]["public_url_s"] < 30
    with pytest.raises(ApiException):  # the route went with the namespace
        core.read_namespace(started["namespace"])
    isolated_state.assert_clean()


INGRESS_TEST = """
import httpx
import pytest

def test_public(live_url, livesandbox):
    assert live_url.startswith("https://sb-")
    assert livesandbox.info.extra["route"]["spec"] == "ingress:traefik"
    assert httpx.get(live_url + "/healthz").status_code == 200

# Scoped to this test: its X-Livesandbox-Test header crosses the router to the proxy pod.
@pytest.mark.http_fault(status=503, times=1, path="/healthz")
def test_public_http_fault(live_http):
    assert live_http.base_url.scheme == "https"
    # Without the header (another test's request): never faulted.
    assert httpx.get(str(live_http.base_url).rstrip("/") + "/healthz").status_code == 200
    assert live_http.get("/healthz").status_code == 503
    assert live_http.get("/healthz").status_code == 200
"""


def test_ingress_route_is_made_awaited_and_removed(
    pytester: pytest.Pytester, isolated_state: IsolatedState, ci_env: None
) -> None:
    example(pytester, "kube", INGRESS_TEST)
    result = pytester.runpytest_subprocess(
        TEMPLATE, "--sandbox-route=ingress:traefik", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=2)
    events = run_events(pytester.path / "r.jsonl")
    (fault,) = next(e for e in events if e.get("nodeid", "").endswith("http_fault"))["chaos"]
    assert (fault["hits"], fault["requests_seen"]) == (1, 2), fault
    isolated_state.assert_clean()


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            "gateway:livesandbox-router/nope",
            "*ConfigError: --sandbox-route=gateway:livesandbox-router/nope: no Gateway 'nope' in "
            "namespace 'livesandbox-router'*Gateways there: livesandbox-router/dev*",
        ),
        (
            "ingress:nope",
            "*ConfigError: --sandbox-route=ingress:nope: no IngressClass 'nope'*IngressClasses: "
            "*traefik*",
        ),
    ],
)
def test_a_route_target_that_does_not_exist_is_refused_before_anything_is_made(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    kube_client: Any,
    route: str,
    message: str,
) -> None:
    example(pytester, "kube", "def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(TEMPLATE, f"--sandbox-route={route}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    isolated_state.assert_clean()


def test_a_url_that_never_answers_says_why_and_leaves_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState, ci_env: None, core: Any
) -> None:
    example(pytester, "kube", "def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox-url-template=https://sb-{id}.nowhere.invalid",
        "--sandbox-route=gateway:livesandbox-router/dev",
        "--sandbox-startup-timeout=40s",
        "--sandbox-report=r.jsonl",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ProvisionError: the public URL https://sb-*.nowhere.invalid did not answer*"
            "Last probe: ConnectError*Route status: *Accepted=False*"
        ]
    )
    isolated_state.assert_clean()


def test_a_missing_proxy_image_is_one_readable_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    example(pytester, "kube", "def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox-image=fault-proxy=localhost/livesandbox/fault-proxy:missing",
        "--sandbox-image=postgres=localhost/livesandbox/postgres:15",
        "--sandbox-startup-timeout=60s",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*RolloutFailed: the fault proxy in namespace sandbox-* cannot start: container "
            "fault-proxy: *Image*",
            "*Hint: the fault proxy's image must be on the node or pullable*",
        ]
    )
    isolated_state.assert_clean()


FAILING = """
import time

import httpx

def test_fails_after_a_request(live_url):
    with httpx.Client(base_url=live_url, timeout=10) as client:
        assert client.get("/items/424242").status_code == 404  # the app logs this line
        try:
            client.get("/alloc", params={"mb": 400})  # past its 256Mi limit: OOMKilled
        except httpx.TransportError:
            pass
        deadline = time.monotonic() + 60
        while True:  # restarted by the kubelet, Ready again
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert False, "on purpose"
"""


@pytest.mark.parametrize("backend", ["kube", "gke"])
def test_a_failed_test_carries_its_pod_logs_events_and_pod_changes(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any, backend: str
) -> None:
    example(pytester, "kube", FAILING)
    result = pytester.runpytest_subprocess(
        f"--sandbox={backend}",
        "--sandbox-report=r.jsonl",
        "--sandbox-html=r.html",
        "--junitxml=j.xml",
    )
    result.assert_outcomes(failed=1)
    (finished,) = [
        e for e in run_events(pytester.path / "r.jsonl") if e["event"] == "test_finished"
    ]
    files = [Path(p) for p in finished["artifacts"]]
    names = {p.name for p in files}
    assert "events.txt" in names and "pods.txt" in names, names
    previous = [p for p in files if p.name.startswith("backend-") and ".previous" in p.name]
    assert previous and "GET /items/424242 404" in previous[0].read_text(), names
    pods = next(p for p in files if p.name == "pods.txt").read_text()
    assert "terminated: OOMKilled (exit 137)" in pods, pods
    events = next(p for p in files if p.name == "events.txt").read_text()
    assert "Pod/backend-" in events, events
    assert str(files[0]) in (pytester.path / "j.xml").read_text()
    assert files[0].name in (pytester.path / "r.html").read_text()
    isolated_state.assert_clean()


EVICTED = """
import time

import httpx
from kubernetes.client import ApiException

def test_fails_after_an_eviction(live_url, chaos, livesandbox):
    with httpx.Client(base_url=live_url, timeout=10) as client:
        assert client.get("/items/535353").status_code == 404  # the evicted pod logs this
    record = chaos.evict("backend")  # returns once the replacement is Ready
    core = chaos.driver.target.core
    for _ in range(300):  # until the API has forgotten the pod and its logs
        try:
            core.read_namespaced_pod(record["pod"], livesandbox.info.namespace)
        except ApiException as exc:
            assert exc.status == 404
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the evicted pod did not go within 60 s")
    assert False, f"on purpose; evicted {record['pod']}"
"""


def test_logs_of_a_pod_deleted_during_the_test_are_kept(
    pytester: pytest.Pytester, isolated_state: IsolatedState, kube_client: Any
) -> None:
    example(pytester, "kube", EVICTED)
    result = pytester.runpytest_subprocess("--sandbox-report=r.jsonl")
    result.assert_outcomes(failed=1)
    (finished,) = [
        e for e in run_events(pytester.path / "r.jsonl") if e["event"] == "test_finished"
    ]
    evicted = finished["chaos"][0]["pod"]
    files = {Path(p).name: Path(p) for p in finished["artifacts"]}
    log = files.get(f"{evicted}.backend.log")
    assert log is not None, sorted(files)
    assert "GET /items/535353 404" in log.read_text(), log.read_text()[-2000:]
    assert f"pod/{evicted} deleted" in files["pods.txt"].read_text()
    isolated_state.assert_clean()

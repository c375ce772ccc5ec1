"""Fixtures for tests against the real single-node cluster of cluster/ (see cluster/README.md).

KUBECONFIG must point at a running cluster (`bash cluster/ci.sh` prints the path). When it is
unset or the API server does not answer, the tests fail under CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from pytest_livesandbox.config import in_ci

HOW_TO_START = (
    "start the cluster with `sudo bash cluster/ci.sh` (prints the kubeconfig path) and export "
    "KUBECONFIG=/var/lib/livesandbox-cluster/kubeconfig-admin"
)
DEMO_IMAGE = "localhost/livesandbox/demo-app:dev"
POSTGRES_IMAGE = "localhost/livesandbox/postgres:15"


def _unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"kube cluster unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"kube cluster unavailable ({reason}); {HOW_TO_START}")


@pytest.fixture(scope="session")
def kube_client() -> Any:
    """An ApiClient for KUBECONFIG, checked to answer /version."""
    try:
        from kubernetes import client, config
    except ImportError as e:  # pragma: no cover - depends on the environment
        _unavailable(f"python package 'kubernetes' missing ({e})")
    path = os.environ.get("KUBECONFIG")
    if not path:
        _unavailable("KUBECONFIG is not set")
    if not os.path.exists(path):
        _unavailable(f"KUBECONFIG file {path} does not exist")
    try:
        api = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as e:
        _unavailable(f"API server from {path} not reachable: {e}")
    return api


@pytest.fixture(scope="session")
def core(kube_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_client)


@pytest.fixture(scope="session")
def apps(kube_client: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(kube_client)


def wait_default_service_account(core: Any, namespace: str, timeout: float = 60.0) -> None:
    """Wait for the namespace's `default` service account (pods are admitted only after it)."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as e:
            if e.status != 404 or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


@pytest.fixture
def namespace(core: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted at the end."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    slug = request.node.name[5:25].replace("_", "-").strip("-").lower()
    name = f"smoke-{slug}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"livesandbox": "smoke"}))
    )
    try:
        wait_default_service_account(core, name)
        yield name
    finally:
        try:
            core.delete_namespace(name, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise


REGISTRY_ADDR_FILE = "/var/lib/livesandbox-cluster/registry.addr"


@pytest.fixture(scope="session")
def registry_addr() -> str:
    """HOST:PORT of the cluster's registry (cluster/registry-up), checked to answer /v2/."""
    import httpx

    addr = os.environ.get("LIVESANDBOX_TEST_REGISTRY", "")
    if not addr and os.path.exists(REGISTRY_ADDR_FILE):
        with open(REGISTRY_ADDR_FILE) as fh:
            addr = fh.read().strip()
    if not addr:
        _unavailable("no registry: LIVESANDBOX_TEST_REGISTRY unset and no " + REGISTRY_ADDR_FILE)
    try:
        httpx.get(f"http://{addr}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        _unavailable(f"the registry {addr} does not answer /v2/ ({exc})")
    return addr

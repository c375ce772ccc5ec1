"""Docker backend tests: a real daemon (scripts/docker-up), sandboxes scoped per test by owner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

from pytest_livesandbox.backends.docker.host import connect
from pytest_livesandbox.backends.docker.resources import MANAGED_BY_LABEL, OWNER, container_name
from pytest_livesandbox.config import in_ci
from pytest_livesandbox.errors import ClusterUnreachable
from pytest_livesandbox.info import MANAGED_BY

DEMO_APP_IMAGE = "localhost/livesandbox/demo-app:dev"
POSTGRES_IMAGE = "postgres:15"
HOW = "start one and load the images with scripts/docker-up"


def _unavailable(reason: str) -> None:
    # In CI a missing daemon is a failure; locally the test skips and says how to enable it.
    if in_ci():
        pytest.fail(f"{reason} (CI=true: live tests may not skip)", pytrace=False)
    pytest.skip(f"{reason}; {HOW}")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The real daemon, with the demo images present."""
    try:
        client = connect()
    except ClusterUnreachable as exc:
        _unavailable(f"needs a Docker daemon: {str(exc).splitlines()[0].rstrip('.')}")
    missing = []
    for image in (DEMO_APP_IMAGE, POSTGRES_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        _unavailable(f"the Docker daemon lacks the images {', '.join(missing)}")
    return client


@dataclass
class DockerScope:
    """The sandboxes of one test: inner runs get a unique owner label (via BUILD_TAG)."""

    client: docker.DockerClient
    owner: str

    def _filters(self) -> dict[str, list[str]]:
        return {"label": [f"{MANAGED_BY_LABEL}={MANAGED_BY}", f"{OWNER}={self.owner}"]}

    def containers(self) -> list[str]:
        """Names of this test's containers (running or not)."""
        found = self.client.containers.list(all=True, filters=self._filters(), sparse=True)
        return [container_name(c) for c in found]

    def leftovers(self) -> list[str]:
        """Every container, network and volume of this test still on the daemon."""
        found = self.containers()
        found += [f"network {n.name}" for n in self.client.networks.list(filters=self._filters())]
        found += [f"volume {v.name}" for v in self.client.volumes.list(filters=self._filters())]
        return found


@pytest.fixture
def docker_scope(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DockerScope]:
    """Label this test's inner runs with their own owner; check nothing of theirs is left."""
    for var in ("GITHUB_RUN_ID", "CI_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    tag = f"lsbtest-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("BUILD_TAG", tag)
    scope = DockerScope(docker_client, f"build_tag-{tag}")
    yield scope
    # Whatever the test asserted, do not let its sandboxes pile up on the daemon.
    for container in docker_client.containers.list(all=True, filters=scope._filters(), sparse=True):
        container.remove(force=True, v=True)
    for network in docker_client.networks.list(filters=scope._filters()):
        network.remove()
    for volume in docker_client.volumes.list(filters=scope._filters()):
        volume.remove(force=True)

"""The Docker daemon, as the docker backend, its chaos effects and ``livesandbox gc`` reach it.

Connections go through testcontainers' client (same ``DOCKER_HOST`` / context / override
resolution as the containers it starts). An unreachable daemon or an image that is neither present
nor pullable becomes one readable error naming the fix::

    client = connect()                         # ClusterUnreachable when no daemon answers
    ensure_image(client, "postgres:15")        # ProvisionError naming the image and how to load it

testcontainers' reaper (Ryuk) needs an image pulled from Docker Hub, which is not always
reachable; unless ``TESTCONTAINERS_RYUK_DISABLED`` is set explicitly we turn it off, and our own
labels plus ``livesandbox gc`` do the reaping instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import docker
import docker.errors
from testcontainers.core.config import testcontainers_config
from testcontainers.core.docker_client import DockerClient

from ...errors import ClusterUnreachable, ProvisionError
from ...postgres.embedded import free_port

T = TypeVar("T")
_PORT_RETRIES = 3


def disable_ryuk() -> None:
    """Turn off testcontainers' Ryuk reaper unless the user configured it on purpose."""
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True


def daemon_address() -> str:
    """Where the client will look for the daemon (for messages)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> docker.DockerClient:
    """A client of a daemon that answered; :class:`ClusterUnreachable` otherwise."""
    disable_ryuk()
    try:
        client = DockerClient().client
        client.ping()
    except docker.errors.DockerException as exc:
        reason = str(exc).removeprefix("Error while fetching server API version: ")
        raise ClusterUnreachable(
            f"no Docker daemon answered at {daemon_address()} ({reason}).\n"
            "Hint: start one (`sudo systemctl start docker`, Docker Desktop, or "
            "`scripts/docker-up` in the pytest-livesandbox repository), point DOCKER_HOST at a "
            "running daemon, or use "
            "--sandbox=local, which needs no Docker."
        ) from None
    return client


def ensure_image(client: docker.DockerClient, ref: str, *, role: str) -> None:
    """Make sure ``ref`` is on the daemon: present, or pulled now; else a clear error."""
    try:
        client.images.get(ref)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(ref)
    except docker.errors.DockerException as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        option = f"{role}=IMAGE"
        raise ProvisionError(
            f"the {role} image {ref!r} is not on this Docker host and could not be pulled "
            f"({reason}).\nHint: build or load it first (`docker build -t {ref} .` or "
            f"`docker load -i image.tar`), or name another image with --sandbox-image {option} "
            "(ini livesandbox_image)."
        ) from None


def port_taken(exc: BaseException) -> bool:
    """True if a container failed to start because its host port was taken meanwhile."""
    text = str(exc)
    return "port is already allocated" in text or "address already in use" in text


def with_free_port(start: Callable[[int], T], cleanup: Callable[[], None]) -> tuple[T, int]:
    """Run ``start(host_port)`` on a free port, retrying another port if it was taken.

    Ports are chosen here rather than by the daemon so that they survive container restarts
    (chaos evictions, a killed database): ``SandboxInfo`` keeps pointing at the same address.
    """
    for attempt in range(_PORT_RETRIES):
        port = free_port()
        try:
            return start(port), port
        except docker.errors.APIError as exc:
            if not port_taken(exc) or attempt == _PORT_RETRIES - 1:
                raise
            cleanup()
    raise AssertionError("unreachable")


def refused_step(exc: docker.errors.DockerException) -> ProvisionError:
    """The error for a set-up step the daemon refused (with the Ryuk hint where it applies)."""
    reason = getattr(exc, "explanation", None) or str(exc)
    hint = ""
    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").lower() in ("false", "0"):
        hint = (
            "\nHint: TESTCONTAINERS_RYUK_DISABLED=false makes testcontainers start its "
            "Ryuk reaper, whose image comes from Docker Hub; unset it (`livesandbox gc` "
            "is the reaper here)."
        )
    return ProvisionError(f"the Docker daemon refused a step of the set-up: {reason}{hint}")

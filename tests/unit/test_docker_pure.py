"""Pure parts of the docker backend: image/port selection, labels and the reaper's decisions."""

from __future__ import annotations

import os
import socket
import time

import pytest

from pytest_livesandbox.backends.docker.backend import component_images, container_port
from pytest_livesandbox.backends.docker.resources import (
    CREATED_AT,
    EXPIRES_AT,
    HOST,
    KEEP,
    PYTEST_PID,
    PYTEST_STARTED,
    DockerRecord,
    docker_sandbox_record,
    sandbox_labels,
)
from pytest_livesandbox.errors import ProvisionError
from pytest_livesandbox.protocol import reap_reason


def test_component_images_default_and_aliases() -> None:
    assert component_images(()) == (None, "postgres:15")
    assert component_images((("backend", "a:1"), ("db", "postgres:16"))) == ("a:1", "postgres:16")
    with pytest.raises(ProvisionError, match="use app=IMAGE, postgres=IMAGE or fault-proxy=IMAGE"):
        component_images((("cache", "redis:7"),))


@pytest.mark.parametrize(
    ("env", "exposed", "port"),
    [
        ({}, None, 8000),
        ({}, {"8080/tcp": {}}, 8080),
        ({}, {"8080/tcp": {}, "9090/tcp": {}}, 8000),
        ({"PORT": "7000"}, {"8080/tcp": {}}, 7000),
        ({}, {"53/udp": {}}, 8000),
    ],
)
def test_container_port(env: dict[str, str], exposed: dict[str, object] | None, port: int) -> None:
    assert container_port(env, exposed) == port


def labels(**overrides: str) -> dict[str, str]:
    base = sandbox_labels(
        sandbox_id="abcd1234",
        run_id="r1",
        owner="me@here",
        created_at=time.time(),
        ttl=3600,
        keep=False,
    )
    return {**base, **overrides}


def test_labels_mark_ownership_and_expiry() -> None:
    made = labels()
    assert made["app.kubernetes.io/managed-by"] == "pytest-livesandbox"
    assert made[EXPIRES_AT].endswith("Z") and made[PYTEST_PID] == str(os.getpid())


def reaped(record: DockerRecord, older_than: float | None) -> bool:
    return reap_reason(docker_sandbox_record(record), older_than) is not None


def test_a_record_of_this_live_process_is_never_reaped() -> None:
    record = DockerRecord("abcd1234", labels())
    assert record.status == "running" and not reaped(record, older_than=0)


def test_dead_owner_means_orphaned_unless_kept() -> None:
    dead = {PYTEST_PID: "999999999", PYTEST_STARTED: "", CREATED_AT: str(time.time() - 60)}
    assert DockerRecord("a", labels(**dead)).status == "orphaned"
    kept = DockerRecord("a", labels(**dead, **{KEEP: "true"}))
    assert kept.status == "kept" and not reaped(kept, older_than=None)
    assert reaped(kept, older_than=0)


def test_expired_sandboxes_of_other_hosts_are_reaped_others_not() -> None:
    foreign = {HOST: socket.gethostname() + "-elsewhere"}
    assert not reaped(DockerRecord("a", labels(**foreign)), older_than=None)
    expired = DockerRecord("a", labels(**foreign, **{EXPIRES_AT: "2020-01-01T00:00:00Z"}))
    assert expired.status == "expired" and reaped(expired, older_than=None)


def test_warm_status_follows_the_lease_not_the_creating_pid() -> None:
    import os
    import time

    from pytest_livesandbox.backends.docker.warm import warm_status
    from pytest_livesandbox.lease import Lease

    gone = DockerRecord("a", {PYTEST_PID: "999999999", HOST: "elsewhere"})
    soon, past = time.time() + 60, time.time() - 1
    assert warm_status(gone, Lease("warm", "r", soon, "k")) == "warm"
    assert warm_status(gone, Lease("warm", "r", past, "k")) == "lapsed"
    assert warm_status(gone, Lease("held", "r", soon, "k", pid=os.getpid())) == "running"
    assert warm_status(gone, Lease("held", "r", soon, "k", pid=999999999)) == "orphaned"
    assert warm_status(gone, None) == gone.status

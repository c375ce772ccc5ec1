"""The docker chaos effects called directly on a sandbox of this process (real containers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import psycopg
import pytest

from pytest_livesandbox.backends.docker import effects as chaos
from pytest_livesandbox.backends.docker.backend import DockerBackend
from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.errors import ChaosError
from pytest_livesandbox.info import SandboxInfo
from pytest_livesandbox.sandbox import Sandbox
from tests.integration.docker.conftest import DEMO_APP_IMAGE


@pytest.fixture(scope="module")
def info(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxInfo]:
    config = SandboxConfig.from_sources(
        cli={"backend": "docker", "image": [f"app={DEMO_APP_IMAGE}"], "health_path": "/readyz"},
        env={},
        ini={},
        rootdir=Path.cwd(),
    )
    with Sandbox(config) as sandbox:
        info = sandbox.info
        yield info
    assert not docker_client.containers.list(all=True, filters={"name": info.id})


def test_cpu_and_memory_limits_are_real_and_lifted(
    info: SandboxInfo, docker_client: docker.DockerClient
) -> None:
    app = docker_client.containers.get(info.extra["containers"]["app"])
    undo = chaos.limit_resources(info, memory=128 * chaos.MiB, cpu=0.5)
    app.reload()
    assert app.attrs["HostConfig"]["Memory"] == 128 * chaos.MiB
    assert app.attrs["HostConfig"]["CpuQuota"] == 50_000
    effect = chaos.restore_resources(info, undo)
    assert effect == {
        "oom_kills": 0,
        "oom_killed": False,
        "app_restarts": 0,
        "outcome": "not exceeded",
    }
    assert chaos.baseline_problems(info, timeout=10) == []


def test_killed_database_comes_back_with_its_data(info: SandboxInfo) -> None:
    assert info.db is not None
    with psycopg.connect(info.db.dsn, autocommit=True) as conn:
        conn.execute("create table if not exists survives (x int)")
        conn.execute("insert into survives values (42)")
    record = chaos.kill_db(info)
    assert record["stop_s"] >= 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(info.db.dsn, connect_timeout=2)
    assert httpx.get(f"{info.endpoint}/readyz").status_code == 503
    assert chaos.start_db(info)["start_s"] > 0
    with psycopg.connect(info.db.dsn) as conn:
        assert conn.execute("select x from survives").fetchall() == [(42,)]
    chaos.wait_app_ready(info)
    assert chaos.baseline_problems(info, timeout=10) == []


def test_eviction_restarts_the_same_container_on_the_same_port(
    info: SandboxInfo, docker_client: docker.DockerClient
) -> None:
    app = docker_client.containers.get(info.extra["containers"]["app"])
    started = app.attrs["State"]["StartedAt"]
    record = chaos.evict(info, grace=5)
    assert record["exit_code"] == 0  # the demo app shuts down gracefully on SIGTERM
    assert record["recovery_s"] >= record["terminated_s"]
    app.reload()
    assert app.attrs["State"]["StartedAt"] != started
    assert httpx.get(f"{info.endpoint}/readyz").status_code == 200


def test_unknown_component_is_a_chaos_error(info: SandboxInfo) -> None:
    with pytest.raises(ChaosError, match="component 'cache': this docker sandbox has no such"):
        chaos.evict(info, "cache")


def test_failure_artifacts_are_the_containers_logs_of_the_window(
    info: SandboxInfo, tmp_path: Path
) -> None:
    began = time.time()
    httpx.get(f"{info.endpoint}/items?artifact-probe=1")
    # The daemon collects container output asynchronously: the line lands a moment later.
    deadline = time.monotonic() + 10
    while True:
        paths = DockerBackend().collect_artifacts(info, began, time.time(), tmp_path)
        text = (tmp_path / "app.log").read_text()
        if "GET /items?artifact-probe=1 200" in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {p.name for p in paths} == {"app.log", "db.log", "proxy.log"}
    assert "GET /items?artifact-probe=1 200" in text

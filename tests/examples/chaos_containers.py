"""Inner test file: the chaos markers the docker and kube backends honour, effects observed.

Run by ``tests/integration/docker`` and ``tests/integration/kube`` under ``-n 2``; each fault is
seen from the outside (connection refused, OOM kill, 503 from the app) and the sandbox must be
back at its baseline for the next test (the chaos fixture's teardown checks, and so does
``test_baseline_after``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pytest_livesandbox.backends import load_backend


def wait_ready(live_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=live_url, timeout=3) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the app did not become ready again"
            time.sleep(0.1)


@pytest.mark.evict_pod(component="backend")
def test_evict(live_url: str) -> None:
    # The marker's removal waits for the replacement; the app must answer again through the
    # same endpoint (a new connection reaches the new container / pod).
    wait_ready(live_url)


@pytest.mark.resource_limits(component="backend", memory="96Mi")
def test_memory_limit(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as client:
        try:
            status = client.get("/alloc", params={"mb": 200}).status_code
        except httpx.TransportError:
            status = 0  # killed mid-request
    assert status in (0, 500, 502, 503)


@pytest.mark.db_connections(max=1)
def test_db_connections(live_url: str) -> None:
    def call(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=live_url, timeout=20) as client:
            response = client.get("/db-sleep", params={"ms": 2500})
            return response.status_code, response.json().get("error", "ok")

    with ThreadPoolExecutor(3) as pool:
        results = sorted(pool.map(call, range(3)))
    assert results[0] == (200, "ok")
    assert (503, "db_unavailable") in results, results


@pytest.mark.kill_db(down_for="2s")
def test_kill_db(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=10) as client:
        first = client.get("/items")
        assert (first.status_code, first.json().get("error")) == (503, "db_unavailable"), (
            first.elapsed,
            first.text,
        )
        deadline = time.monotonic() + 90
        while client.get("/items").status_code != 200:
            assert time.monotonic() < deadline, "the app did not recover"
            time.sleep(0.2)


def test_imperative(chaos, live_url: str) -> None:
    record = chaos.evict("backend")
    assert record["recovery_s"] > 0
    wait_ready(live_url)
    with chaos.limit("backend", memory="256Mi", cpu="500m") as fault:
        assert fault.record["kind"] == "resource_limits"
    assert fault.record["oom_kills"] == 0


DOOMED = """
import json, os, sys
from pytest_livesandbox.backends import load_backend
from pytest_livesandbox.chaos.markers import Fault
from pytest_livesandbox.info import SandboxInfo
info = SandboxInfo.from_json(json.loads(sys.stdin.read()))
driver = load_backend(info.backend).chaos(info, owner="gw9:doomed")
driver.apply(Fault("resource_limits", "backend", {"memory": 200 * 1024 * 1024}))
driver.apply(Fault("db_connections", "db", {"max": 5}))
os._exit(0)  # a worker dying with its faults in force
"""


def test_faults_of_a_dead_process_are_repaired(chaos, livesandbox) -> None:
    info = livesandbox.info
    data = json.dumps(info.to_json(secrets=True))
    subprocess.run([sys.executable, "-c", DOOMED], input=data, text=True, check=True)
    driver = load_backend(info.backend).chaos(info, owner="")
    assert not driver.clean()
    assert sorted(driver.repair(only_stale=True)) == [
        "undid db_connections left by gw9:doomed",
        "undid resource_limits left by gw9:doomed",
    ]
    assert driver.clean()
    assert driver.baseline_problems(60) == []


def test_baseline_after(livesandbox, live_url: str) -> None:
    # Runs after the chaos tests in its worker; the sandbox lock keeps them apart anyway.
    wait_ready(live_url)
    info = livesandbox.info
    assert load_backend(info.backend).chaos(info, owner="").baseline_problems(30) == []

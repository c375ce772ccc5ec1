"""Real faults on the containers: a memory limit that OOM-kills, an eviction, a database outage.

The faults hit the one sandbox every test shares, so run this file without ``-n`` (with the chaos
markers, ``@pytest.mark.resource_limits`` / ``evict_pod`` / ``kill_db``, the plugin runs such tests
alone).
"""

from __future__ import annotations

import time

import httpx
import pytest

from pytest_livesandbox.chaos import docker as chaos

MiB = 1024 * 1024


def test_allocation_over_the_memory_limit_gets_the_app_oom_killed(livesandbox, live_http):
    with chaos.memory_limit(livesandbox.info, 96 * MiB) as limit:
        with pytest.raises(httpx.TransportError):
            live_http.get("/alloc?mb=200")
    assert limit.effect["oom_killed"] and limit.effect["oom_kills"] >= 1
    # The limit is gone and the app came back by itself, like a pod after an OOM kill.
    assert live_http.get("/alloc?mb=200").status_code == 200


def test_allocation_under_the_limit_is_fine(livesandbox, live_http):
    with chaos.memory_limit(livesandbox.info, 96 * MiB) as limit:
        assert live_http.get("/alloc?mb=16").status_code == 200
    assert limit.effect["oom_kills"] == 0


def test_the_app_recovers_from_eviction_and_keeps_its_data(livesandbox, live_http):
    name = f"survivor-{time.time_ns()}"
    item = live_http.post("/items", json={"name": name}).json()
    record = chaos.evict(livesandbox.info)
    assert record["recovery_s"] > 0
    assert live_http.get(f"/items/{item['id']}").json()["name"] == name


def test_a_database_outage_is_a_503_and_heals(livesandbox, live_http):
    with chaos.db_down(livesandbox.info):
        response = live_http.get("/items")
        assert response.status_code == 503
        assert response.json() == {"error": "db_unavailable"}
    assert live_http.get("/items").status_code == 200

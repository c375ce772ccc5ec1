"""Real faults on the containers: a memory limit that OOM-kills, an eviction, a database outage.

Everything here is public API: the ``chaos`` fixture (the markers' imperative twin). Each fault is
removed when its block ends (or the test does), and the sandbox is checked to be back to normal;
a test that asks for ``chaos`` runs alone, so other tests never see its faults.
"""

from __future__ import annotations

import time

import httpx
import pytest


def test_allocation_over_the_memory_limit_gets_the_app_oom_killed(chaos, live_http):
    with chaos.limit("backend", memory="96Mi") as limit:
        with pytest.raises(httpx.TransportError):
            live_http.get("/alloc?mb=200")
    assert limit.record["oom_killed"] and limit.record["oom_kills"] >= 1
    # The limit is gone and the app came back by itself, like a pod after an OOM kill.
    assert live_http.get("/alloc?mb=200").status_code == 200


def test_allocation_under_the_limit_is_fine(chaos, live_http):
    with chaos.limit("backend", memory="96Mi") as limit:
        assert live_http.get("/alloc?mb=16").status_code == 200
    assert limit.record["oom_kills"] == 0


def test_the_app_recovers_from_eviction_and_keeps_its_data(chaos, live_http):
    name = f"survivor-{time.time_ns()}"
    item = live_http.post("/items", json={"name": name}).json()
    record = chaos.evict("backend")  # returns once the app answers again
    assert record["recovery_s"] > 0
    assert live_http.get(f"/items/{item['id']}").json()["name"] == name


def test_a_database_outage_is_a_503_and_heals(chaos, live_http):
    with chaos.kill_db(down_for="60s"):  # started again when the block ends
        response = live_http.get("/items")
        assert response.status_code == 503
        assert response.json() == {"error": "db_unavailable"}
    assert live_http.get("/items").status_code == 200

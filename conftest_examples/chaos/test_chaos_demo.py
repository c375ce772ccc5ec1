"""Faults with real effects: each test shows what the app does when the world breaks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


def timed(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    began = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - began


@pytest.mark.latency(ms=200, target="app")
def test_app_latency_is_felt_by_clients(live_http: httpx.Client) -> None:
    response, elapsed = timed(live_http, "/healthz")
    assert response.status_code == 200
    assert elapsed >= 0.2


@pytest.mark.latency(ms=300, target="db")
def test_slow_database_stays_under_the_statement_timeout(live_http: httpx.Client) -> None:
    response, elapsed = timed(live_http, "/items")
    assert response.status_code == 200
    assert elapsed >= 0.3  # at least one database round trip per request


@pytest.mark.network_fault(kind="reset", target="app")
def test_reset_connection_is_a_transport_error(live_http: httpx.Client) -> None:
    with pytest.raises(httpx.TransportError):
        live_http.get("/healthz")


@pytest.mark.evict_pod(component="backend", when="during", delay="0.2s")
def test_app_comes_back_after_eviction(live_url: str) -> None:
    seen_down = False
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=live_url, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                ok = client.get("/readyz").status_code == 200
            except httpx.TransportError:
                ok = False
            seen_down = seen_down or not ok
            if seen_down and ok:
                break
            time.sleep(0.02)
    assert seen_down and ok


@pytest.mark.resource_limits(component="backend", memory="96Mi")
def test_big_allocation_does_not_fit(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=10) as client:
        try:
            status = client.get("/alloc", params={"mb": 200}).status_code
        except httpx.TransportError:
            status = None  # the app was killed mid-request (OOM)
    assert status != 200


@pytest.mark.db_connections(max=1)
def test_one_connection_for_three_requests(live_url: str) -> None:
    def call(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=live_url, timeout=15) as client:
            response = client.get("/db-sleep", params={"ms": 2500})
            return response.status_code, response.json().get("error", "")

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(call, range(3)))
    assert sorted(code for code, _ in results) == [200, 503, 503]
    print(results)


@pytest.mark.kill_db(down_for="1s")
def test_database_outage_then_recovery(live_http: httpx.Client) -> None:
    first = live_http.get("/items")
    assert first.status_code == 503
    assert first.json()["error"] == "db_unavailable"
    deadline = time.monotonic() + 20
    while live_http.get("/items").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover"
        time.sleep(0.1)


def test_imperative_faults(chaos, live_http: httpx.Client) -> None:
    with chaos.latency(100, target="app"):
        assert timed(live_http, "/healthz")[1] >= 0.1
    assert timed(live_http, "/healthz")[1] < 0.1
    record = chaos.evict("backend")
    assert record["recovery_s"] > 0
    assert live_http.get("/readyz").status_code == 200


def test_after_chaos_the_sandbox_is_back_to_baseline(live_http: httpx.Client) -> None:
    response, elapsed = timed(live_http, "/items")
    assert response.status_code == 200
    assert elapsed < 0.1


@pytest.mark.http_fault(status=503, times=2, retry_after="1s", path="/items")
def test_client_retries_until_the_app_answers(live_http: httpx.Client) -> None:
    attempts = 1
    while (response := live_http.get("/items")).status_code == 503:
        assert response.headers["Retry-After"] == "1"
        attempts += 1
    assert response.status_code == 200 and attempts == 3


@pytest.mark.http_fault(abort=True, method="POST", path="/items")
def test_an_aborted_request_is_a_transport_error(live_http: httpx.Client) -> None:
    with pytest.raises(httpx.TransportError):
        live_http.post("/items", json={"name": "never stored"})
    assert live_http.get("/items").status_code == 200

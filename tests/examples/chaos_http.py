"""Inner test file: http_fault against the live demo app (run with -n 2).

Timing bounds hold under load: a delayed request is never early (1 ms of timer slack) and the
upper bound is loose (1 s); the proxy's accuracy is measured by benchmarks/fault_proxy.py.
Timed requests use fresh connections (``Connection: close``; see chaos_effects.py for why).
"""

from __future__ import annotations

import time

import httpx
import pytest


@pytest.mark.http_fault(status=503, times=2, retry_after="1s", path="/items")
def test_fails_twice_then_succeeds(live_http: httpx.Client) -> None:
    answers = [live_http.get("/items") for _ in range(4)]
    assert [r.status_code for r in answers] == [503, 503, 200, 200]
    assert answers[0].headers["Retry-After"] == "1"


@pytest.mark.http_fault(status=500, path="/items*", method="POST")
def test_path_and_method(live_http: httpx.Client) -> None:
    assert live_http.post("/items", json={"name": "faulted"}).status_code == 500
    assert live_http.get("/items").status_code == 200
    assert live_http.get("/items/1").status_code in (200, 404)
    assert live_http.get("/healthz").status_code == 200


@pytest.mark.http_fault(abort=True, path="/healthz")
def test_abort(live_http: httpx.Client) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        live_http.get("/healthz")
    assert live_http.get("/readyz").status_code == 200


@pytest.mark.http_fault(delay="300ms", path="/healthz")
def test_delay(live_http: httpx.Client) -> None:
    for _ in range(3):
        began = time.perf_counter()
        assert live_http.get("/healthz", headers={"Connection": "close"}).status_code == 200
        assert 0.299 <= time.perf_counter() - began < 1.3
    began = time.perf_counter()
    assert live_http.get("/readyz", headers={"Connection": "close"}).status_code == 200
    assert time.perf_counter() - began < 0.299  # not matched: not delayed, never early


@pytest.mark.http_fault(status=503, rate=0.3, seed=1, path="/healthz")
def test_rate(live_http: httpx.Client) -> None:
    codes = [live_http.get("/healthz").status_code for _ in range(100)]
    assert 15 <= codes.count(503) <= 45 and codes.count(200) + codes.count(503) == 100


@pytest.mark.http_fault(status=503, path="/never")
def test_unfired(live_http: httpx.Client) -> None:
    assert live_http.get("/healthz").status_code == 200


@pytest.mark.http_fault(status=503, path="/never", require_hit=False)
def test_unfired_allowed(live_http: httpx.Client) -> None:
    assert live_http.get("/healthz").status_code == 200


def test_retries_until_success(chaos, live_http: httpx.Client) -> None:
    fault = chaos.http_fault(503, times=2, path="/items")
    attempts = 1
    while live_http.get("/items").status_code != 200:
        attempts += 1
    assert attempts == 3 == chaos.requests_seen(fault) and chaos.hits(fault) == 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # not trio too, where it is installed: the counts below are for one run


@pytest.mark.anyio
@pytest.mark.http_fault(status=503, times=1, path="/healthz")
async def test_async_client_is_scoped_too(live_async_http: httpx.AsyncClient) -> None:
    assert (await live_async_http.get("/healthz")).status_code == 503
    assert (await live_async_http.get("/healthz")).status_code == 200

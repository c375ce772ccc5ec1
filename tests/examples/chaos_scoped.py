"""Inner test file (-n 2): one test's client -> app faults while plain tests run beside it."""

from __future__ import annotations

import time

import httpx
import pytest


@pytest.mark.http_fault(status=503)
@pytest.mark.latency(ms=20, target="app")
def test_scoped(live_http: httpx.Client) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert live_http.get("/healthz").status_code == 503


@pytest.mark.network_fault(kind="reset", target="app")
def test_scoped_reset(live_http: httpx.Client) -> None:
    # Each of this test's requests is reset; a plain test's would fail if the fault leaked.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        with pytest.raises(httpx.TransportError):
            live_http.get("/healthz")


@pytest.mark.parametrize("n", range(6))
def test_plain(live_http: httpx.Client, n: int) -> None:
    for _ in range(5):
        assert live_http.get("/healthz").status_code == 200
        time.sleep(0.05)

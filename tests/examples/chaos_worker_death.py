"""Inner test file (run with -n 2): a worker dies holding a fault; the others are not hurt."""

from __future__ import annotations

import os
import time

import httpx
import pytest


@pytest.mark.latency(ms=500, target="app")
@pytest.mark.resource_limits(memory="512Mi")
def test_dies_holding_faults() -> None:
    os._exit(3)


@pytest.mark.parametrize("n", range(4))
def test_others_see_baseline(live_http: httpx.Client, n: int) -> None:
    time.sleep(0.1)
    began = time.perf_counter()
    assert live_http.get("/items").status_code == 200
    assert time.perf_counter() - began < 0.2

"""Inner test file: a fault that escapes the chaos fixture is found, repaired and reported."""

from __future__ import annotations

import os
import signal
import time

import httpx

from pytest_livesandbox.faultproxy.client import ProxyClient


def test_leaks_a_toxic(chaos, livesandbox) -> None:
    client = ProxyClient.from_info(livesandbox.info)
    assert client is not None
    client.add_toxic("app", "latency", "both", {"ms": 300}, owner="sneaky", owner_pid=1)


def test_next_test_sees_baseline(live_http: httpx.Client) -> None:
    began = time.perf_counter()
    assert live_http.get("/healthz").status_code == 200
    assert time.perf_counter() - began < 0.1


def test_breaks_the_app_for_good(chaos, livesandbox) -> None:
    if os.environ.get("CHAOS_LEAK_BREAK") != "1":
        return
    # Kill the supervisor and the app together: nothing can bring the app back.
    os.killpg(int(livesandbox.info.extra["app_pid"]), signal.SIGKILL)


def test_runs_after_the_damage(live_http: httpx.Client) -> None:
    assert live_http.get("/healthz").status_code == 200

"""Inner tests: the app container's clock moves and comes back (docker and kube clock tests)."""

import time

import httpx
import pytest


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def app_offset(live_http):
    return live_http.get("/time").json()["now"] - time.time()


def test_a_token_expires_when_the_app_clock_jumps(chaos, live_http):
    tokens = live_http.post("/tokens", json={"user": "alice", "tenant": "a"}).json()
    assert live_http.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
    with chaos.clock(offset="+1h") as fault:
        assert 3590 < app_offset(live_http) < 3610  # the app's own reported time
        expired = live_http.get("/me", headers=bearer(tokens["access_token"]))
        assert (expired.status_code, expired.json()["error"]) == (401, "token_expired")
        fresh = live_http.post("/tokens/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert fresh.status_code == 200
        assert live_http.get("/me", headers=bearer(fresh.json()["access_token"])).status_code == 200
    assert abs(app_offset(live_http)) < 2
    assert fault.record["spec"] == "+3600.000000 x1"
    assert 3590 < fault.record["app_offset_s"] < 3610  # the Date header the plugin checked


@pytest.mark.clock(offset="-2h")
def test_the_marker_moves_the_app_clock_back(live_http):
    assert -7205 < app_offset(live_http) < -7195
    assert live_http.get("/readyz").status_code == 200  # pool, sleeps and timeouts still work


@pytest.mark.clock(rate=60, when="during", delay="0.2s")
def test_a_faster_clock_from_the_middle_of_the_test(live_url):
    # A client of its own: under rate=60 the app's socket timeouts shrink 60x too (libfaketime
    # scales poll timeouts), so an idle kept-alive connection would be closed by the app.
    with httpx.Client(base_url=live_url, timeout=10) as http:
        time.sleep(0.5)
        first = http.get("/time").json()["now"]
        time.sleep(1)
        second = http.get("/time").json()["now"]
    assert 40 < second - first < 80  # one real second is a minute for the app


def test_the_clock_is_back(live_http):
    assert abs(app_offset(live_http)) < 2

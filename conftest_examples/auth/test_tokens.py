"""Token expiry against the app's own clock: the clock marker moves it, not the test's."""

from __future__ import annotations

import time

import pytest
from conftest import bearer


@pytest.mark.clock(offset="+1h")
def test_the_app_clock_is_an_hour_ahead(live_http) -> None:
    app_now = live_http.get("/time").json()["now"]
    assert 3590 < app_now - time.time() < 3610  # the test's clock did not move


def test_an_expired_token_is_refused_and_refresh_works(chaos, live_http, login) -> None:
    tokens = login("alice", "a")
    assert live_http.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
    with chaos.clock(offset="+1h"):  # past the access token's 15 minutes
        expired = live_http.get("/me", headers=bearer(tokens["access_token"]))
        assert (expired.status_code, expired.json()["error"]) == (401, "token_expired")
        fresh = live_http.post("/tokens/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert fresh.status_code == 200
        assert live_http.get("/me", headers=bearer(fresh.json()["access_token"])).status_code == 200


@pytest.mark.clock(offset="+20m", when="during", delay="0.3s")
def test_a_token_expires_during_a_session(live_http, login) -> None:
    headers = bearer(login("alice", "a")["access_token"])
    assert live_http.get("/me", headers=headers).status_code == 200
    deadline = time.monotonic() + 5
    while live_http.get("/me", headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.05)
    assert live_http.get("/me", headers=headers).json()["error"] == "token_expired"


@pytest.mark.clock(rate=60)
def test_an_hour_passes_in_a_minute(live_http) -> None:
    first = live_http.get("/time").json()["now"]
    time.sleep(1)
    second = live_http.get("/time").json()["now"]
    assert 50 < second - first < 75  # one real second is a minute for the app

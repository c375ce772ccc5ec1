"""Inner tests: the app's clock moves, nothing else's does (run by tests/plugin/test_auth.py)."""

import json
import os
import time
from pathlib import Path

import pytest


def maps(pid):
    return Path(f"/proc/{pid}/maps").read_text()


def app_offset(live_http):
    return live_http.get("/time").json()["now"] - time.time()


@pytest.mark.clock(offset="-2h")
def test_only_the_app_clock_moves(live_http, livesandbox):
    assert -7205 < app_offset(live_http) < -7195
    info = livesandbox.info
    state = json.loads((Path(info.workdir) / "app.supervisor.json").read_text())
    assert "libfaketime" in maps(state["pid"])
    assert "libfaketime" not in maps(state["supervisor_pid"])
    assert "libfaketime" not in maps(info.extra["postgres_pid"])
    assert "LD_PRELOAD" not in os.environ and "libfaketime" not in maps(os.getpid())


@pytest.mark.clock(rate=60, when="during", delay="0.2s")
def test_a_faster_clock_from_the_middle_of_the_test(live_http):
    assert abs(app_offset(live_http)) < 2
    time.sleep(1.2)  # 0.2 s real, then 1 s at 60x: a minute ahead
    assert 45 < app_offset(live_http) < 75


def test_the_clock_is_back(live_http, livesandbox, chaos):
    assert abs(app_offset(live_http)) < 1
    control = Path(livesandbox.info.extra["fake_clock"]["control"])
    assert control.read_text().strip() == "+0 x1"
    with chaos.clock(offset="+1d") as fault:
        assert 86395 < app_offset(live_http) < 86405
    assert abs(app_offset(live_http)) < 1
    assert fault.record["spec"] == "+86400.000000 x1"

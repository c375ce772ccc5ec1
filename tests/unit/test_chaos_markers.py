"""Marker parsing: every argument, unit and default, and each mistake's message."""

from __future__ import annotations

import pytest

from pytest_livesandbox.chaos.markers import (
    Fault,
    parse_chaos_duration,
    parse_cpu,
    parse_memory,
    plan_from_markers,
)
from pytest_livesandbox.errors import MarkerError


def one(name: str, *args: object, **kwargs: object) -> Fault:
    (fault,) = plan_from_markers([(name, args, kwargs)]).faults
    return fault


def test_latency_defaults_and_positional_ms() -> None:
    fault = one("latency", 300)
    assert (fault.kind, fault.target, fault.when) == ("latency", "db", "before")
    assert fault.params == {"ms": 300.0, "jitter": 0.0, "direction": "both"}
    fault = one("latency", ms=50, jitter=10, target="app", direction="downstream")
    assert fault.params == {"ms": 50.0, "jitter": 10.0, "direction": "downstream"}


@pytest.mark.parametrize(
    ("name", "kwargs", "kind", "params"),
    [
        ("network_fault", {"kind": "reset"}, "reset", {"direction": "both", "after_bytes": 0}),
        ("network_fault", {"kind": "timeout", "after": "2s"}, "timeout", {"after": 2.0}),
        ("network_fault", {"kind": "bandwidth", "rate_kbps": 64}, "bandwidth", {"rate_kbps": 64}),
        ("network_fault", {"kind": "slow_close"}, "slow_close", {"delay": 1.0}),
        ("resource_limits", {"memory": "96Mi"}, "resource_limits", {"memory": 96 * 2**20}),
        ("resource_limits", {"cpu": "500m"}, "resource_limits", {"cpu": 0.5}),
        ("db_connections", {"max": 1}, "db_connections", {"max": 1}),
        ("kill_db", {}, "kill_db", {"restart": True, "down_for": 1.0}),
        ("kill_db", {"restart": False}, "kill_db", {"restart": False, "down_for": None}),
    ],
)
def test_valid_markers(name: str, kwargs: dict[str, object], kind: str, params: dict) -> None:
    fault = one(name, **kwargs)
    assert fault.kind == kind
    assert params.items() <= dict(fault.params).items()


def test_evict_during_with_delay() -> None:
    fault = one("evict_pod", component="backend", when="during", delay="0.5s")
    assert (fault.kind, fault.target, fault.when, fault.delay) == (
        "evict",
        "backend",
        "during",
        0.5,
    )


def test_several_markers_make_one_plan() -> None:
    plan = plan_from_markers(
        [("latency", (100,), {}), ("skipif", (False,), {}), ("kill_db", (), {})]
    )
    assert [f.kind for f in plan.faults] == ["latency", "kill_db"]
    assert plan.kinds == {"latency", "kill_db"}


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "message"),
    [
        ("latency", (), {}, "'ms' is required"),
        ("latency", (), {"ms": "300"}, "ms='300' must be a number"),
        ("latency", (), {"ms": 300, "targt": "db"}, "unknown argument 'targt'"),
        ("latency", (), {"ms": 300, "target": "cache"}, "target='cache' is not one of"),
        ("latency", (), {"ms": 300, "direction": "in"}, "direction='in' is not one of"),
        ("latency", (), {"ms": 10, "jitter": 20}, "jitter=20 must not exceed"),
        ("latency", (), {"ms": -1}, "ms=-1 must be >= 0"),
        ("latency", (1, 2), {}, "at most 1 positional"),
        ("network_fault", (), {"kind": "flood"}, "kind='flood' is not one of"),
        ("network_fault", (), {"kind": "reset", "rate_kbps": 5}, "does not apply to kind='reset'"),
        ("network_fault", (), {"kind": "bandwidth"}, "needs rate_kbps"),
        ("network_fault", (), {"kind": "bandwidth", "rate_kbps": "64k"}, "rate_kbps='64k'"),
        ("network_fault", (), {"kind": "timeout", "after": -2}, "after=-2: -2 is not a duration"),
        ("network_fault", (), {"kind": "slow_close", "delay": "3 days"}, "delay='3 days': "),
        ("evict_pod", (), {"component": "db"}, "component='db' is not one of"),
        ("evict_pod", (), {"when": "after"}, "when='after' is not one of"),
        ("evict_pod", (), {"delay": "1s"}, "delay only applies with when='during'"),
        ("evict_pod", (), {"when": "during", "delay": True}, "delay=True: True is not a dur"),
        ("resource_limits", (), {}, "give memory= and/or cpu="),
        ("resource_limits", (), {"memory": "96"}, "memory='96' is not a memory size"),
        ("resource_limits", (), {"memory": 100_000_000}, "give a size with a unit"),
        ("resource_limits", (), {"memory": "1Mi"}, "below 4Mi"),
        ("resource_limits", (), {"cpu": "half"}, "cpu='half'"),
        ("resource_limits", (), {"component": "frontend", "memory": "1Gi"}, "component="),
        ("db_connections", (), {}, "'max' is required"),
        ("db_connections", (), {"max": 1.5}, "max=1.5 must be a whole number"),
        ("db_connections", (), {"max": -1}, "max=-1 must be >= 0"),
        ("kill_db", (), {"restart": "yes"}, "restart='yes' must be True or False"),
        ("kill_db", (), {"down_for": "1s", "restart": False}, "down_for only applies"),
        ("kill_db", (), {"down_for": "1 day"}, "down_for='1 day': '1 day' is not a duration"),
    ],
)
def test_bad_arguments_name_the_marker_and_argument(
    name: str, args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(MarkerError) as excinfo:
        plan_from_markers([(name, args, kwargs)])
    assert str(excinfo.value).startswith(f"@{name}")
    assert message in str(excinfo.value)


def test_unit_parsers() -> None:
    assert parse_chaos_duration("1.5s", "d") == 1.5
    assert parse_chaos_duration("2m", "d") == 120
    assert parse_memory("1Gi") == 2**30
    assert parse_memory("100M") == 100_000_000
    assert parse_cpu(2) == 2.0
    with pytest.raises(MarkerError):
        parse_chaos_duration("0s", "d", allow_zero=False)


def test_http_fault_params_and_scope() -> None:
    fault = one("http_fault", 503, times=2, retry_after="2s", path="/items*", method="post")
    assert (fault.kind, fault.target, fault.marker) == ("http", "app", "http_fault")
    assert fault.params == {
        "action": "status",
        "status": 503,
        "retry_after": 2,
        "times": 2,
        "path": "/items*",
        "method": ["POST"],
    }
    assert fault.scoped and fault.counted and fault.require_hit
    assert one("http_fault").params == {"action": "status", "status": 503}
    assert one("http_fault", abort=True, rate=0.25).params == {
        "action": "abort",
        "rate": 0.25,
        "seed": 0,
    }
    assert one("http_fault", delay="200ms", every=3).params == {
        "action": "delay",
        "delay": 0.2,
        "every": 3,
    }


def test_which_faults_are_scoped_and_counted() -> None:
    assert one("latency", 10, target="app").scoped
    assert not one("latency", 10, target="db").scoped
    assert one("latency", 10, target="db").counted
    assert one("network_fault", "reset", target="app", require_hit=False).require_hit is False
    assert not one("kill_db").scoped and not one("kill_db").counted

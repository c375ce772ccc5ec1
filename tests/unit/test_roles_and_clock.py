"""Pure parts of database roles and the fake clock: parsers, the control-file line, ELF checks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pytest_livesandbox.backends.local.clock import (
    NEUTRAL_SPEC,
    is_static_elf,
    preload_env,
    read_spec,
    spec_for,
    static_command,
    write_spec,
)
from pytest_livesandbox.chaos.markers import parse_offset, plan_from_markers
from pytest_livesandbox.errors import MarkerError, RoleError
from pytest_livesandbox.postgres.grants import check_role_request, parse_privileges
from tests.plugin.test_auth import STATIC_ELF


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("+1h", 3600.0), ("-30m", -1800.0), ("90s", 90.0), ("+2d", 172800.0), ("+1.5h", 5400.0)],
)
def test_offsets_carry_their_unit(text: str, seconds: float) -> None:
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("value", ["+3600", 3600, "1 hour", "", "+1y"])
def test_an_offset_without_a_known_unit_is_refused(value: object) -> None:
    with pytest.raises(MarkerError, match="offset="):
        parse_offset(value)


def test_the_clock_marker_makes_one_fault() -> None:
    plan = plan_from_markers([("clock", ("+1h",), {"when": "during", "delay": "2s"})])
    (fault,) = plan.faults
    assert (fault.kind, fault.target, fault.when, fault.delay) == ("clock", "backend", "during", 2)
    assert fault.params == {"offset_s": 3600.0, "rate": 1.0}
    with pytest.raises(MarkerError, match="unknown argument 'speed'"):
        plan_from_markers([("clock", (), {"speed": 2})])


def test_privileges_are_checked_by_name() -> None:
    assert parse_privileges("t", ["insert", " select "]) == ("INSERT", "SELECT")
    assert len(parse_privileges("t", "ALL PRIVILEGES")) == 7
    with pytest.raises(RoleError, match=r"unknown privilege\(s\) 'DROP'"):
        parse_privileges("t", "SELECT, DROP")
    with pytest.raises(RoleError, match="is empty"):
        parse_privileges("t", " , ")
    with pytest.raises(RoleError, match="as a string"):
        parse_privileges("t", 7)


def test_role_requests_are_checked_before_the_database() -> None:
    check_role_request("tenant_a", {"notes": "SELECT"}, {"app.tenant_id": "a"})
    with pytest.raises(RoleError, match="role name 'Tenant A'"):
        check_role_request("Tenant A", {}, {})
    with pytest.raises(RoleError, match="not a setting name"):
        check_role_request("r", {}, {"app tenant": "a"})
    with pytest.raises(RoleError, match="give a string"):
        check_role_request("r", {}, {"app.flag": True})


def test_the_control_line_is_neutral_or_an_offset_with_a_rate() -> None:
    assert spec_for() == NEUTRAL_SPEC == "+0 x1"
    assert spec_for(-90) == "-90.000000 x1"
    # A rate counts from the app's start in libfaketime: the line makes it count from now.
    started = time.time() - 10
    offset, rate = spec_for(0, 61, app_started_at=started).split()
    assert rate == "x61" and -601 < float(offset) < -599


def test_the_control_file_is_replaced_whole(tmp_path: Path) -> None:
    control = tmp_path / "app.clock"
    assert read_spec(control) is None
    assert write_spec(control, 3600) == "+3600.000000 x1"
    assert read_spec(control) == "+3600.000000 x1"
    write_spec(control)
    assert read_spec(control) == NEUTRAL_SPEC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.clock"]
    env = preload_env(Path("/lib/libfaketimeMT.so.1"), control)
    assert env["FAKETIME_NO_CACHE"] == "1" and env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"


def test_static_programs_are_recognised(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.write_bytes(STATIC_ELF)
    assert is_static_elf(static)
    assert not is_static_elf(sys.executable)  # dynamically linked: has PT_INTERP
    assert not is_static_elf(__file__)  # not ELF at all
    assert static_command((str(static), "--port", "1")) == str(static)
    assert static_command((sys.executable, "app.py")) is None

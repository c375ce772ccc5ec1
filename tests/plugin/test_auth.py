"""Roles and the app's clock end to end: real PostgreSQL roles, a real app whose clock moves.

Inner runs in subprocesses (pytester) against local sandboxes; each leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_livesandbox.backends.local.clock import find_faketime
from pytest_livesandbox.config import in_ci
from tests.conftest import DEMO_APP_CMD, REPO, IsolatedState

EXAMPLES = REPO / "tests" / "examples"


@pytest.fixture
def faketime() -> Path:
    library = find_faketime()
    if library is None:
        reason = "libfaketime is missing: apt-get install -y faketime libfaketime"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return library


def local_ini(pytester: pytest.Pytester, *extra: str) -> None:
    lines = [
        "[pytest]",
        "livesandbox_backend = local",
        f"livesandbox_app_cmd = {DEMO_APP_CMD}",
        "livesandbox_health_path = /readyz",
        "livesandbox_chaos_verify_timeout = 10s",
        *extra,
    ]
    pytester.makefile(".ini", pytest="\n".join(lines) + "\n")


def events(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "test_finished":
            found[event["nodeid"].split("::")[-1]] = event
    return found


def copy_auth_example(pytester: pytest.Pytester) -> None:
    shutil.copytree(REPO / "conftest_examples" / "auth", pytester.path, dirs_exist_ok=True)
    ini = pytester.path / "pytest.ini"
    ini.write_text(
        ini.read_text().replace(
            "{python} ../../examples/demo_app/app.py", DEMO_APP_CMD.replace("\\", "/")
        )
    )


def test_the_auth_example_passes_and_catches_both_bugs(
    pytester: pytest.Pytester, isolated_state: IsolatedState, faketime: Path
) -> None:
    copy_auth_example(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=ok.jsonl")
    result.assert_outcomes(passed=8)
    found = events(pytester.path / "ok.jsonl")
    clock = found["test_the_app_clock_is_an_hour_ahead"]["chaos"][0]
    assert clock["kind"] == "clock" and clock["spec"] == "+3600.000000 x1"
    assert clock["restored_spec"] == "+0 x1" and clock["removed_at"] >= clock["applied_at"]
    isolated_state.assert_clean()

    # The same tests against the app started with the two bugs they exist to catch.
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--sandbox-app-env=DEMO_APP_BUGS=token_expiry_ignored,rls_not_forced",
    )
    result.assert_outcomes(passed=4, failed=4)
    for name in (
        "test_tenants.py::test_the_api_shows_each_tenant_only_its_notes",
        "test_tenants.py::test_the_app_role_has_only_what_it_needs",
        "test_tokens.py::test_an_expired_token_is_refused_and_refresh_works",
        "test_tokens.py::test_a_token_expires_during_a_session",
    ):
        result.stdout.fnmatch_lines([f"FAILED {name}*"])
    isolated_state.assert_clean()


def test_roles_are_real_scoped_and_dropped(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_ini(pytester)
    pytester.makepyfile(test_roles=(EXAMPLES / "db_roles.py").read_text())
    names = pytester.path / "names.txt"
    monkeypatch.setenv("ROLE_NAMES_FILE", str(names))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_roles.py::test_a_failing_test_still_drops_its_role*"])
    assert len(set(names.read_text().split())) == 4
    isolated_state.assert_clean()

    # Under xdist: the same role names asked for at once by two workers are made unique.
    names.unlink()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "-k", "not no_role_is_left and not nothing_is_made"
    )
    result.assert_outcomes(passed=4, failed=1)
    made = names.read_text().split()
    assert len(made) == len(set(made)) == 4
    assert any("_gw0_" in n for n in made) or any("_gw1_" in n for n in made)
    isolated_state.assert_clean()


def test_the_clock_moves_only_the_app_and_comes_back(
    pytester: pytest.Pytester, isolated_state: IsolatedState, faketime: Path
) -> None:
    local_ini(pytester, "livesandbox_fake_clock = on")
    pytester.makepyfile(test_clock=(EXAMPLES / "clock_effects.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=3)
    found = events(pytester.path / "r.jsonl")
    during = found["test_a_faster_clock_from_the_middle_of_the_test"]["chaos"][0]
    assert during["when"] == "during" and during["params"]["rate"] == 60
    assert during["spec"].endswith(" x60")
    isolated_state.assert_clean()


def test_an_app_that_does_not_load_the_library_is_a_clear_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState, faketime: Path
) -> None:
    # `env -u LD_PRELOAD` loads libfaketime itself, then execs the app without it.
    local_ini(pytester, "livesandbox_fake_clock = on")
    ini = pytester.path / "pytest.ini"
    ini.write_text(ini.read_text().replace("_cmd = ", "_cmd = env -u LD_PRELOAD "))
    pytester.makepyfile(
        test_static="""
        import pytest

        @pytest.mark.clock(offset="+1h")
        def test_clock(live_http):
            pass

        def test_after(live_http):
            assert live_http.get("/healthz").status_code == 200
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_clock*",
            "E *ChaosError: clock: the app (pid *) did not load libfaketime: a statically "
            "linked program*",
        ]
    )
    isolated_state.assert_clean()


def test_a_clock_moved_behind_the_plugins_back_is_repaired(
    pytester: pytest.Pytester, isolated_state: IsolatedState, faketime: Path
) -> None:
    local_ini(pytester, "livesandbox_fake_clock = on")
    pytester.makepyfile(
        test_stray="""
        import time
        from pathlib import Path

        def test_moves_the_clock_itself(chaos, livesandbox):
            control = Path(livesandbox.info.extra["fake_clock"]["control"])
            control.write_text("+3600 x1\\n")

        def test_sees_the_real_time(live_http):
            assert abs(live_http.get("/time").json()["now"] - time.time()) < 2
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ChaosError: chaos teardown: the sandbox did not return to baseline: the app's "
            "clock is still moved (libfaketime spec '+3600 x1'); repaired: set the app's clock "
            "back to the real time*"
        ]
    )
    isolated_state.assert_clean()


STATIC_ELF = (
    # A 64-bit little-endian ELF header with one PT_LOAD program header and no PT_INTERP.
    b"\x7fELF\x02\x01\x01"
    + b"\x00" * 9
    + (2).to_bytes(2, "little")
    + (62).to_bytes(2, "little")
    + (1).to_bytes(4, "little")
    + b"\x00" * 8
    + (64).to_bytes(8, "little")
    + b"\x00" * 8
    + b"\x00" * 4
    + (64).to_bytes(2, "little")
    + (56).to_bytes(2, "little")
    + (1).to_bytes(2, "little")
    + b"\x00" * 6
    + (1).to_bytes(4, "little")
    + b"\x00" * 52
)


def test_bad_clock_and_role_input_are_collection_errors(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.clock(offset="+3600")
        def test_unitless(): pass

        @pytest.mark.clock(offset="+1h", rate=-1)
        def test_rate(): pass

        @pytest.mark.clock()
        def test_nothing(): pass
        """
    )
    result = pytester.runpytest("--collect-only", "--sandbox=local", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_bad.py::test_unitless: @clock: offset='+3600' has no unit; give a signed "
            "number with s, m, h or d, e.g. '+1h'*",
            "*test_bad.py::test_rate: @clock: rate=-1 must be >= 0*",
            "*test_bad.py::test_nothing: @clock: give offset= and/or rate=*",
        ]
    )
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.clock(offset="+1h")
        def test_clock(): pass
        """
    )
    static = tmp_path / "static-app"
    static.write_bytes(STATIC_ELF)
    static.chmod(0o755)
    cases = {
        "--sandbox=docker": "this sandbox runs no app",
        "--sandbox=docker --sandbox-image=app=myapp:dev": "the app runs without libfaketime "
        "(livesandbox_fake_clock = off, the default)*",
        "--sandbox=kube": "the app runs without libfaketime (livesandbox_fake_clock = off*",
        "--sandbox-fake-clock=off": "the app runs without libfaketime (livesandbox_fake_clock "
        "= off, the default); set livesandbox_fake_clock = on*",
        f"--sandbox-app-cmd={static} --sandbox-fake-clock=on": "the app command's program "
        f"{static} is statically linked: LD_PRELOAD cannot load libfaketime*",
    }
    for option, message in cases.items():
        args = ["--collect-only", "-p", "no:cacheprovider", "--sandbox=local", *option.split()]
        if option == "--sandbox-fake-clock=off":
            args.append(f"--sandbox-app-cmd={sys.executable} app.py")
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, option
        result.stderr.fnmatch_lines([f"*test_bad.py::test_clock: @clock: {message}"])
    monkeypatch.setenv("LIVESANDBOX_FAKETIME_LIB", str(tmp_path / "missing.so"))
    result = pytester.runpytest(
        "--collect-only",
        "--sandbox=local",
        "--sandbox-fake-clock=auto",
        f"--sandbox-app-cmd={sys.executable} app.py",
    )
    result.stderr.fnmatch_lines(
        ["*@clock: moving the app's clock needs libfaketime; install it: apt-get install*"]
    )


def test_the_clock_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.clock(*"])

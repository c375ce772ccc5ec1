"""http_fault, faults scoped to their test, and faults proven to fire: real runs via pytester."""

from __future__ import annotations

import pytest

from tests.plugin.test_chaos_plugin import copy_example, run, sandbox_ini

__all__ = ["sandbox_ini"]  # the fixture, imported for this module's tests


def test_http_faults_have_their_effect_and_count_it(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_http.py")
    result, found = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=9, errors=1)  # test_unfired: passed, then errored
    twice = found["test_fails_twice_then_succeeds"]["chaos"][0]
    assert (twice["kind"], twice["hits"], twice["requests_seen"]) == ("http", 2, 4)
    assert twice["removed_at"] >= twice["applied_at"] and twice["scope"]
    assert found["test_path_and_method"]["chaos"][0]["hits"] == 1
    assert found["test_abort"]["chaos"][0]["hits"] == 1
    assert found["test_delay"]["chaos"][0]["hits"] == 3
    assert 15 <= found["test_rate"]["chaos"][0]["hits"] <= 45
    retries = found["test_retries_until_success"]["chaos"][0]
    assert (retries["hits"], retries["requests_seen"]) == (2, 3)
    assert "scope" not in retries  # the chaos fixture: the test runs alone, the fault is global
    assert found["test_async_client_is_scoped_too"]["chaos"][0]["hits"] == 1
    assert found["test_unfired"]["outcome"] == "error"
    assert found["test_unfired_allowed"]["outcome"] == "passed"
    assert found["test_unfired_allowed"]["chaos"][0]["hits"] == 0
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unfired*",
            "E *ChaosNotObserved: a chaos test whose fault never happened tests nothing: "
            "@http_fault(status=503, path='/never', target='app') affected 0 requests: *"
            "require_hit=False*",
        ]
    )


def test_a_scoped_fault_runs_beside_plain_tests_that_never_see_it(
    sandbox_ini: pytest.Pytester,
) -> None:
    copy_example(sandbox_ini, "chaos_scoped.py")
    result, found = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=8)  # every plain request got its 200, none was reset
    scoped = found["test_scoped"]
    assert {record["kind"] for record in scoped["chaos"]} == {"http", "latency"}
    assert found["test_scoped_reset"]["chaos"][0]["hits"] > 0
    beside = [
        (name, plain)
        for name in ("test_scoped", "test_scoped_reset")
        for plain, event in found.items()
        if plain.startswith("test_plain")
        and event["worker"] != found[name]["worker"]
        and event["started"] < found[name]["finished"]
        and event["finished"] > found[name]["started"]
    ]
    assert beside, "no plain test ran on the other worker while a scoped fault was in force"
    for record in scoped["chaos"] + found["test_scoped_reset"]["chaos"]:
        assert record["hits"] > 0 and record["scope"]


def test_an_unscoped_fault_still_takes_the_sandbox_alone(sandbox_ini: pytest.Pytester) -> None:
    sandbox_ini.makepyfile(
        test_alone="""
        import time
        import pytest

        @pytest.mark.latency(ms=50, target="db", require_hit=False)
        def test_db_fault():
            time.sleep(1)

        @pytest.mark.parametrize("n", range(3))
        def test_plain(live_http, n):
            assert live_http.get("/healthz").status_code == 200
        """
    )
    result, found = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=4)
    alone = found["test_db_fault"]
    overlapping = [
        name
        for name, event in found.items()
        if name.startswith("test_plain")
        and event["started"] < alone["finished"] - 0.05
        and event["finished"] > alone["started"] + 0.05
    ]
    assert overlapping == []


BAD_HTTP = """
import pytest

@pytest.mark.http_fault(status=503, abort=True)
def test_two_actions(): pass

@pytest.mark.http_fault(status=42)
def test_status(): pass

@pytest.mark.http_fault(status=503, times=0)
def test_times(): pass

@pytest.mark.http_fault(status=503, every=2, rate=0.5)
def test_every_and_rate(): pass

@pytest.mark.http_fault(status=503, rate=1.5)
def test_rate(): pass

@pytest.mark.http_fault(status=503, seed=3)
def test_seed(): pass

@pytest.mark.http_fault(delay="soon")
def test_delay(): pass

@pytest.mark.http_fault(status=503, path="items")
def test_path(): pass

@pytest.mark.http_fault(status=503, method="FETCH")
def test_method(): pass

@pytest.mark.http_fault(status=503, target="db")
def test_target(): pass

@pytest.mark.http_fault(abort=True, body="x")
def test_body(): pass

@pytest.mark.http_fault(status=503, retry_after="1.5s")
def test_retry_after(): pass

@pytest.mark.http_fault(status=503, require_hit="no")
def test_require_hit(): pass

@pytest.mark.http_fault(status=503, colour="red")
def test_unknown(): pass

@pytest.mark.latency(ms=10, require_hit=0)
def test_latency_require_hit(): pass

@pytest.mark.http_fault(status=503, times=2, path="/items*", method=["GET", "post"])
def test_fine(): pass
"""


def test_every_bad_http_fault_argument_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad=BAD_HTTP)
    result = pytester.runpytest("--collect-only", "--strict-markers", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*bad markers:",
            "*::test_two_actions: @http_fault: give one of status=, abort=True, delay=*",
            "*::test_status: @http_fault: status=42 must be 200..599*",
            "*::test_times: @http_fault: times=0 must be >= 1",
            "*::test_every_and_rate: @http_fault: give every= or rate=, not both",
            "*::test_rate: @http_fault: rate=1.5 must be a fraction in (0, 1]",
            "*::test_seed: @http_fault: seed= only applies with rate=",
            "*::test_delay: @http_fault: delay='soon': 'soon' is not a duration*",
            "*::test_path: @http_fault: path='items' must be a glob starting with '/'",
            "*::test_method: @http_fault: method='FETCH' is not one of 'GET'*",
            "*::test_target: @http_fault: target='db': http_fault acts on HTTP requests*",
            "*::test_body: @http_fault: body= only applies with status=",
            "*::test_retry_after: @http_fault: retry_after='1.5s': whole seconds only",
            "*::test_require_hit: @http_fault: require_hit='no' must be True or False",
            "*::test_unknown: @http_fault: unknown argument 'colour'*",
            "*::test_latency_require_hit: @latency: require_hit=0 must be True or False",
        ]
    )
    assert "test_fine" not in result.stderr.str()

"""The GitHub Actions summary and annotations, built from synthetic schema-1 events."""

from __future__ import annotations

from pathlib import Path

from pytest_livesandbox.report.github import (
    MAX_ERRORS,
    SUMMARY_LIMIT,
    GithubSink,
    command,
    escape_property,
)


def sink(tmp_path: Path, problems: list[str] | None = None) -> tuple[GithubSink, list[str]]:
    written: list[str] = []
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_WORKSPACE": str(tmp_path)}
    made = GithubSink(env, written.append, tmp_path, tmp_path, lambda: list(problems or []))
    made.emit(
        {
            "event": "run_started",
            "backend": "local",
            "error": None,
            "sandbox": {
                "id": "ab12",
                "backend": "local",
                "endpoint": "http://127.0.0.1:1",
                "timings": {"ready_s": 0.5},
            },
        }
    )
    return made, written


def finished(
    nodeid: str, outcome: str, message: str = "E   assert 1 == 2", **extra: object
) -> dict:
    return {
        "event": "test_finished",
        "nodeid": nodeid,
        "outcome": outcome,
        "message": message,
        "chaos": [],
        "artifacts": [],
        "location": {"file": "t.py", "line": 3},
        **extra,
    }


def test_workflow_command_escaping() -> None:
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert command("warning", "100%") == "::warning::100%25"


def test_failures_first_errors_after_and_capped_at_ten(tmp_path: Path) -> None:
    made, written = sink(tmp_path)
    made.emit(finished("t.py::test_setup_error", "error"))
    for n in range(14):
        made.emit(finished(f"t.py::test_{n}", "failed"))
    made.emit(
        {
            "event": "run_finished",
            "counts": {"failed": 14, "error": 1},
            "duration": 3.0,
            "teardown_s": 0.1,
        }
    )
    made.close()
    errors = [w for w in written if w.startswith("::error")]
    assert len(errors) == MAX_ERRORS
    assert all("test_setup_error" not in e for e in errors)  # errors come after failures
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| `t.py::test_") == 15  # the rest are in the summary


def test_flaky_tests_and_warnings(tmp_path: Path) -> None:
    made, written = sink(tmp_path, problems=["webhook http://x: 3 of 9 events not delivered"])
    made.emit(finished("t.py::test_flaky", "failed"))
    made.emit(finished("t.py::test_flaky", "passed", message=""))
    made.emit(
        finished(
            "t.py::test_chaos",
            "error",
            message="E   ChaosError: chaos teardown: ...; the sandbox stays degraded: db",
        )
    )
    made.emit({"event": "run_finished", "counts": {"passed": 1, "error": 1}, "duration": 1.0})
    made.close()
    assert made.flaky() == [("t.py::test_flaky", 1)]
    warnings = [w for w in written if w.startswith("::warning")]
    assert len(warnings) == 2
    assert "sandbox degraded by t.py::test_chaos" in warnings[0]
    assert "events not delivered" in warnings[1]
    summary = (tmp_path / "summary.md").read_text()
    assert "- `t.py::test_flaky` after 1 rerun(s)" in summary
    assert "`t.py::test_flaky`" not in summary.split("Passed on a rerun")[0]


def test_a_huge_run_is_cut_to_the_budget_with_a_note(tmp_path: Path) -> None:
    made, _ = sink(tmp_path)
    for n in range(20_000):
        made.emit(finished(f"tests/test_big.py::test_{n:05d}", "failed", "E   " + "y" * 500))
    made.emit({"event": "run_finished", "counts": {"failed": 20_000}, "duration": 9.0})
    text = made.render(SUMMARY_LIMIT)
    assert len(text.encode()) <= SUMMARY_LIMIT
    assert len(text.encode()) > SUMMARY_LIMIT * 0.9  # cut near the limit, not far below it
    assert "more failed test(s) not shown: the summary is capped at 1 MiB" in text
    assert text.startswith("### pytest-livesandbox: 20000 failed in 9.00s")

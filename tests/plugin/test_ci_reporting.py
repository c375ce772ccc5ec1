"""CI integration through pytester: GitHub job summary + annotations, GitLab JUnit paths, wall time.

Each inner run is a real local sandbox (PostgreSQL + the demo app); GitHub Actions is what its
runner sets in the environment (GITHUB_ACTIONS, GITHUB_STEP_SUMMARY, GITHUB_WORKSPACE, ...).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_livesandbox.report.github import SUMMARY_LIMIT
from tests.conftest import DEMO_APP_CMD, IsolatedState

LOCAL = ["--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-health-path=/readyz"]

SUITE = """
def fetch(client, path):
    return client.get(path).status_code


def test_ok(live_http):
    assert live_http.get("/healthz").status_code == 200


def test_wrong_status(live_http):
    assert live_http.get("/items/424242").status_code == 200


def test_fails_in_a_helper(live_http):
    code = fetch(live_http, "/items/1")
    assert code == 201, "created"
"""


@pytest.fixture
def github(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment a GitHub Actions runner gives a step; returns the summary file."""
    summary = pytester.path / "_github" / "step_summary.md"
    summary.parent.mkdir()
    summary.write_text("")
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(pytester.path),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "4242",
    }.items():
        monkeypatch.setenv(name, value)
    return summary


def errors(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("::error ")]


def test_summary_annotations_junit_paths_and_wall_time(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    github: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_PROJECT_DIR", str(pytester.path))
    pytester.makeini("[pytest]\njunit_logging = system-out\n")
    pytester.makepyfile(test_shop=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *LOCAL, "--sandbox-report=out/r.jsonl", "--junitxml=out/j.xml"
    )
    result.assert_outcomes(passed=1, failed=2)
    stdout = result.stdout.str()

    # Annotations on the failing line of the test file; a helper's failure on the test's line.
    lines = (pytester.path / "test_shop.py").read_text().splitlines()
    wrong = lines.index('    assert live_http.get("/items/424242").status_code == 200') + 1
    helper = lines.index('    assert code == 201, "created"') + 1
    found = errors(stdout)
    assert len(found) == 2, stdout
    assert found[0].startswith(
        f"::error file=test_shop.py,line={wrong},title=test_shop.py%3A%3Atest_wrong_status failed::"
    )
    assert "assert 404 == 200" in found[0]
    assert f"file=test_shop.py,line={helper}," in found[1]

    summary = github.read_text()
    assert summary.startswith("### pytest-livesandbox: 2 failed, 1 passed in ")
    sandbox_id = re.search(r"sandbox (\w+) \(local\) ready in", stdout).group(1)  # type: ignore[union-attr]
    assert re.search(
        rf"\| `{sandbox_id}` \| local \| http://127\.0\.0\.1:\d+ \| [\d.]+s \|", summary
    )
    assert "Bring-up stages: " in summary
    assert "#### Failed tests (2)" in summary
    row = next(ln for ln in summary.splitlines() if "`test_shop.py::test_wrong_status`" in ln)
    assert "| failed | AssertionError: assert 404 == 200 |" in row
    link = re.search(r"\[`(out/r\.jsonl\.artifacts/[^`]+/app\.log)`\]\(([^)]+)\)", row)
    assert link is not None, row
    assert link.group(2) == "https://github.com/acme/shop/actions/runs/4242#artifacts"
    assert "GET /items/424242 404" in (pytester.path / link.group(1)).read_text()

    # GitLab: project-relative artifact paths in the JUnit file, and the attachment line.
    case = next(
        c
        for c in ET.parse(pytester.path / "out" / "j.xml").iter("testcase")
        if c.get("name") == "test_wrong_status"
    )
    relative = [
        p.get("value") for p in case.iter("property") if p.get("name") == "livesandbox_artifact"
    ]
    assert link.group(1) in relative
    assert all(not str(p).startswith("/") for p in relative)
    assert f"[[ATTACHMENT|{link.group(1)}]]" in (case.findtext("system-out") or "")

    # Timing honesty: one line with the whole run's wall time, bring-up and teardown included.
    result.stdout.re_match_lines(
        [r"whole run [\d.]+s wall, including bring-up [\d.]+s and teardown [\d.]+s"]
    )
    isolated_state.assert_clean()


def test_fifteen_failures_give_ten_annotations_and_the_summary_stays_under_1_mib(
    pytester: pytest.Pytester, isolated_state: IsolatedState, github: Path
) -> None:
    # Earlier tools of the same step already wrote almost 1 MiB: our part must fit in the rest.
    github.write_text("x" * (SUMMARY_LIMIT - 1500) + "\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(15))
        def test_fails(live_url, n):
            assert n == -1, "x" * 150
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *LOCAL)
    result.assert_outcomes(failed=15)
    found = errors(result.stdout.str())
    assert len(found) == 10
    assert found[0].startswith("::error file=test_fifteen_failures")
    assert github.stat().st_size <= SUMMARY_LIMIT
    ours = github.read_text()[SUMMARY_LIMIT - 1500 :]
    assert "### pytest-livesandbox: 15 failed in " in ours
    assert re.search(r"\d+ more failed test\(s\) not shown: the summary is capped at 1 MiB", ours)
    isolated_state.assert_clean()


@pytest.mark.parametrize("how", ["cli", "ini"])
def test_ci_annotations_false_writes_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState, github: Path, how: str
) -> None:
    pytester.makepyfile("def test_fails(live_url):\n    assert False\n")
    if how == "ini":
        pytester.makeini("[pytest]\nlivesandbox_ci_annotations = false\n")
        args = []
    else:
        args = ["--sandbox-ci-annotations=false"]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *LOCAL, *args)
    result.assert_outcomes(failed=1)
    assert errors(result.stdout.str()) == []
    assert github.read_text() == ""
    isolated_state.assert_clean()

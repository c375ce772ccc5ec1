"""Bad paths and values stop the run at configure, naming the option; nothing is made."""

from __future__ import annotations

import signal
import threading

import pytest

from pytest_livesandbox.info import ci_job, default_owner
from tests.conftest import DEMO_APP_CMD, IsolatedState

BAD = {
    "state-dir-is-a-file": (
        [],
        {"LIVESANDBOX_STATE_DIR": "afile/state"},
        "*LIVESANDBOX_STATE_DIR: */afile is a file, not a folder; point it at a folder*",
    ),
    "html-is-a-folder": (
        ["--sandbox-html=adir"],
        {},
        "*--sandbox-html: */adir is a folder; give a file name, e.g. */adir/report.html*",
    ),
    "report-under-a-file": (
        ["--sandbox-report=afile/r.jsonl"],
        {},
        "*--sandbox-report: */afile is a file, not a folder; point it at a folder*",
    ),
    # Root may write anywhere the permission bits say no; it still cannot create files under
    # /proc or /sys. (Unprivileged, the same paths fail the permission check instead.)
    "report-under-proc": (
        ["--sandbox-report=/proc/livesandbox-test/r.jsonl"],
        {},
        "*--sandbox-report: *[/]proc*; point it elsewhere",
    ),
    "html-in-sys": (
        ["--sandbox-html=/sys/livesandbox-test.html"],
        {},
        "*--sandbox-html: *[/]sys*; point it elsewhere",
    ),
    "state-dir-under-proc": (
        [],
        {"LIVESANDBOX_STATE_DIR": "/proc/livesandbox-test-state"},
        "*LIVESANDBOX_STATE_DIR: *[/]proc*; point it elsewhere",
    ),
    "db-dsn-on-local": (
        ["--sandbox-db-dsn=postgresql://u:p@h/db"],
        {},
        "*--sandbox-db-dsn: the local backend always runs its own embedded PostgreSQL; drop the "
        "option or use --sandbox=kube*",
    ),
    "attach-on-local": (
        ["--sandbox-attach=3f9c2a1b"],
        {},
        "*--sandbox-attach: the local backend cannot attach to a sandbox; keep one with "
        "--sandbox-keep*",
    ),
    "attach-on-docker": (
        ["--sandbox=docker", "--sandbox-image=app=myapp:dev", "--sandbox-attach=3f9c2a1b"],
        {},
        "*--sandbox-attach: the docker backend cannot attach to a sandbox; keep one with "
        "--sandbox-keep*",
    ),
    "db-dsn-on-docker": (
        ["--sandbox=docker", "--sandbox-image=app=myapp:dev", "--sandbox-db-dsn=postgresql://h/d"],
        {},
        "*--sandbox-db-dsn: the docker backend always runs its own PostgreSQL container; drop the "
        "option or use --sandbox=kube*",
    ),
    "kube-namespace-prefix": (
        ["--sandbox=kube", "--sandbox-namespace-prefix=Bad_Prefix"],
        {},
        "*--sandbox-namespace-prefix 'Bad_Prefix' does not make a valid namespace name*",
    ),
    "kube-missing-manifests": (
        ["--sandbox=kube", "--sandbox-manifests=nowhere"],
        {},
        "*--sandbox-manifests */nowhere does not exist*",
    ),
    "kube-bad-kubeconfig": (
        ["--sandbox=kube", "--sandbox-kubeconfig=kubeconfig"],
        {},
        "*kubeconfig */kubeconfig is not valid YAML (line 3); fix the file or point*",
    ),
    "unknown-deployer": (
        ["--sandbox=kube", "--sandbox-deployer=flux"],
        {},
        "*--sandbox-deployer (from --sandbox-deployer): 'flux' is not one of apply, argocd*",
    ),
    "argocd-without-git-repo": (
        ["--sandbox=kube", "--sandbox-deployer=argocd"],
        {},
        "*--sandbox-deployer=argocd needs --sandbox-git-repo (ini livesandbox_git_repo)*",
    ),
    "argocd-with-local-manifests": (
        [
            "--sandbox=kube",
            "--sandbox-deployer=argocd",
            "--sandbox-git-repo=git://h/r.git",
            "--sandbox-manifests=adir",
        ],
        {},
        "*--sandbox-manifests with --sandbox-deployer=argocd: Argo CD reads the manifests from*",
    ),
    "argocd-on-local": (
        ["--sandbox-deployer=argocd", "--sandbox-git-repo=git://h/r.git"],
        {},
        "*--sandbox-deployer=argocd: backend 'local' deploys with apply only; use*",
    ),
    "latency-nan": (
        ["-k", "nan"],
        {},
        "*::test_nan: @latency: ms=nan must be a finite number",
    ),
    "latency-absurd": (
        ["-k", "absurd"],
        {},
        "*::test_absurd: @latency: ms=1000000000.0 is absurd here: at most 60000",
    ),
    "kill-db-absurd-down-for": (
        ["-k", "forever"],
        {},
        "*::test_forever: @kill_db: down_for='100m' is longer than a test should wait: at most 10m",
    ),
}

TESTS = """
import pytest

@pytest.mark.latency(ms=float("nan"))
def test_nan(live_url):
    pass

@pytest.mark.latency(ms=1e9)
def test_absurd(live_url):
    pass

@pytest.mark.kill_db(down_for="100m")
def test_forever(live_url):
    pass
"""


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_usage_error_before_anything_is_made(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    args, env, expected = BAD[case]
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    (pytester.path / "kubeconfig").write_text("apiVersion: v1\nclusters: [oops\n")
    (pytester.path / "app.py").write_text("open('app-started', 'w').close()\n")
    for key, value in env.items():
        monkeypatch.setenv(key, str(pytester.path / value))
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess(
        "--sandbox=local", "--sandbox-app-cmd={python} app.py", *args
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()
    assert not (pytester.path / "app-started").exists(), "a sandbox was provisioned"
    isolated_state.assert_clean()


@pytest.mark.parametrize(
    "flags",
    [
        ["--sandbox-fault-proxy=false", "--sandbox-keep=false"],
        ["--no-sandbox-fault-proxy", "--no-sandbox-keep"],
    ],
)
def test_boolean_options_take_false(
    pytester: pytest.Pytester, isolated_state: IsolatedState, flags: list[str]
) -> None:
    pytester.makepyfile(
        """
        def test_direct(livesandbox):
            assert "fault_proxy" not in livesandbox.info.extra
            assert livesandbox.info.endpoint == livesandbox.info.extra["app_direct_endpoint"]
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", *flags
    )
    result.assert_outcomes(passed=1)
    assert "kept running" not in result.stdout.str()
    isolated_state.assert_clean()


def test_relative_state_dir_is_resolved(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app runs in another folder than pytest: both must see the same state folder.
    (pytester.path / "sub").mkdir()
    monkeypatch.setenv("LIVESANDBOX_STATE_DIR", "_livesandbox_state")
    pytester.makepyfile(
        """
        import os
        from pathlib import Path

        def test_abs(livesandbox):
            assert os.path.isabs(os.environ["LIVESANDBOX_STATE_DIR"])
            assert Path(livesandbox.info.workdir).parent == Path.cwd() / "_livesandbox_state"
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local", f"--sandbox-app-cmd={DEMO_APP_CMD}", "--sandbox-app-cwd=sub"
    )
    result.assert_outcomes(passed=1)
    isolated_state.assert_clean()


def test_owner_tells_ci_jobs_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ci_job({}) is None
    github = {"GITHUB_RUN_ID": "81", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_JOB": "tests"}
    assert ci_job(github) == "github_run_id-81-2-tests"
    assert ci_job({"CI_JOB_ID": "4711"}) == "ci_job_id-4711"
    assert ci_job({"BUILDKITE_JOB_ID": "0190-ab"}) == "buildkite_job_id-0190-ab"
    monkeypatch.setenv("CI_JOB_ID", "4711")
    assert default_owner() == "ci_job_id-4711"


def test_pytest_driven_from_a_thread_is_no_internal_error(pytester: pytest.Pytester) -> None:
    # IDEs and execnet's thread model run pytest off the main thread: signal handlers can only
    # be installed on it, so the plugin leaves SIGTERM alone there instead of failing configure.
    pytester.makepyfile(test_a="def test_a(): pass\n")
    results: list[pytest.RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(
            pytester.runpytest("-p", "no:cacheprovider", "--sandbox=local")
        )
    )
    # As in an xdist worker: SIGTERM untouched, so the inner run would want to install its own.
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        thread.start()
        thread.join(120)
    finally:
        signal.signal(signal.SIGTERM, previous)
    results[0].assert_outcomes(passed=1)
    assert "INTERNALERROR" not in str(results[0].stdout) + str(results[0].stderr)

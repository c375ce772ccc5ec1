"""--sandbox-build / --sandbox-build-arg / --sandbox-registry: what is wrong stops at configure.

No engine, no cluster: these are checked without I/O (pytest.UsageError, exit code 4).
"""

from __future__ import annotations

import pytest

from tests.conftest import IsolatedState

CASES = {
    "no-registry-on-kube": (
        ["--sandbox=kube", "--sandbox-build=backend=."],
        "*--sandbox-build needs --sandbox-registry with --sandbox=kube*",
    ),
    "no-registry-on-gke": (
        ["--sandbox=gke", "--sandbox-build=backend=.", "--sandbox-gke-cluster=p/l/n"],
        "*--sandbox-build needs --sandbox-registry with --sandbox=gke*",
    ),
    "local-has-no-images": (
        ["--sandbox=local", "--sandbox-build=app=."],
        "*--sandbox-build: the local backend runs the app as a process*",
    ),
    "docker-unknown-component": (
        ["--sandbox=docker", "--sandbox-build=worker=."],
        "*--sandbox-build worker=...: the docker backend runs the components app*",
    ),
    "bad-syntax": (
        ["--sandbox=docker", "--sandbox-build=."],
        "*--sandbox-build (from --sandbox-build): '.' is not COMPONENT=PATH[[]:DOCKERFILE]*",
    ),
    "built-twice": (
        ["--sandbox=docker", "--sandbox-build=app=.", "--sandbox-build=app=other"],
        "*'app' is built twice*",
    ),
    "build-and-image": (
        ["--sandbox=docker", "--sandbox-build=app=.", "--sandbox-image=app=x:1"],
        "*--sandbox-build and --sandbox-image both name app*",
    ),
    "bad-build-arg": (
        ["--sandbox=docker", "--sandbox-build=app=.", "--sandbox-build-arg=NOVALUE"],
        "*'NOVALUE' is not [[]COMPONENT:[]]KEY=VALUE*",
    ),
    "build-arg-for-unbuilt": (
        ["--sandbox=docker", "--sandbox-build=app=.", "--sandbox-build-arg=db:X=1"],
        "*--sandbox-build-arg db:...: no --sandbox-build for db*",
    ),
    "registry-with-scheme": (
        ["--sandbox=kube", "--sandbox-build=backend=.", "--sandbox-registry=https://r.io/x"],
        "*'https://r.io/x' is not a registry: use HOST[[]:PORT][[]/PATH] without a scheme*",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_build_settings_are_a_usage_error(
    case: str, pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    args, line = CASES[case]
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    isolated_state.assert_clean()


def test_build_lines_come_from_ini_too(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makeini(
        "[pytest]\nlivesandbox_backend = kube\nlivesandbox_build =\n    backend=.\n"
        "    worker=.:Dockerfile.worker\n"
    )
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sandbox-build needs --sandbox-registry*"])

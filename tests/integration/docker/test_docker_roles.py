"""live_db_role and db_role_audit on --sandbox=docker: real roles in the PostgreSQL container."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope


def test_roles_are_made_used_and_dropped_in_the_container(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    docker_scope: DockerScope,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(test_roles=(REPO / "tests" / "examples" / "db_roles.py").read_text())
    names = pytester.path / "names.txt"
    monkeypatch.setenv("ROLE_NAMES_FILE", str(names))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--sandbox=docker",
        f"--sandbox-image=app={DEMO_APP_IMAGE}",
        "--sandbox-health-path=/readyz",
    )
    result.assert_outcomes(passed=6, failed=1)
    assert len(set(names.read_text().split())) == 4
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

"""live_db_role and db_role_audit on --sandbox=kube: real roles in the sandbox's PostgreSQL pod."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.conftest import REPO, IsolatedState
from tests.integration.kube.test_kube_backend import events, namespace_exists

pytestmark = pytest.mark.kube


@pytest.fixture
def kube_roles(pytester: pytest.Pytester, kube_client: Any) -> pytest.Pytester:
    """conftest_examples/kube's settings (manifests made absolute) with the role tests."""
    shutil.copytree(REPO / "conftest_examples" / "kube", pytester.path, dirs_exist_ok=True)
    (pytester.path / "test_demo_app.py").unlink()
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    ini.write_text(ini.read_text().replace("../../examples/demo_app/k8s", str(manifests)))
    pytester.makepyfile(test_roles=(REPO / "tests" / "examples" / "db_roles.py").read_text())
    return pytester


def test_roles_are_made_used_and_dropped_in_the_namespace(
    kube_roles: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = kube_roles.path / "names.txt"
    monkeypatch.setenv("ROLE_NAMES_FILE", str(names))
    result = kube_roles.runpytest_subprocess("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    result.assert_outcomes(passed=6, failed=1)
    assert len(set(names.read_text().split())) == 4
    namespace = events(kube_roles.path / "r.jsonl")[0]["sandbox"]["namespace"]
    assert not namespace_exists(core, namespace)
    isolated_state.assert_clean()

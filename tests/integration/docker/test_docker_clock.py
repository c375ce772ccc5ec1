"""The clock marker on --sandbox=docker: libfaketime bind-mounted into the real app container."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import docker
import pytest

from pytest_livesandbox.chaos.clock import find_faketime
from tests.conftest import REPO, IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope, _unavailable

pytestmark = pytest.mark.skipif(
    find_faketime() is None, reason="needs libfaketime: apt-get install -y libfaketime"
)
STATIC_IMAGE = "localhost/livesandbox/pause:1"
# cluster/build-images' cache (read before pytester moves HOME)
PAUSE_ARCHIVE = Path.home() / ".cache" / "livesandbox" / "images" / "pause.tar"
ARGS = ("-p", "no:cacheprovider", "--sandbox=docker", f"--sandbox-image=app={DEMO_APP_IMAGE}")


def finished(path: Path) -> dict[str, Any]:
    """The report's test_finished events by test name."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return {e["nodeid"].split("::")[-1]: e for e in events if e["event"] == "test_finished"}


def with_auth_example(pytester: pytest.Pytester) -> None:
    """conftest_examples/auth (its token and tenant tests) plus the container clock tests."""
    shutil.copytree(REPO / "conftest_examples" / "auth", pytester.path, dirs_exist_ok=True)
    (pytester.path / "pytest.ini").write_text("[pytest]\nlivesandbox_health_path = /readyz\n")
    pytester.makepyfile(
        test_clock=(REPO / "tests" / "examples" / "clock_containers.py").read_text()
    )


def test_the_app_container_clock_moves_tokens_expire_and_it_comes_back(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    with_auth_example(pytester)
    result = pytester.runpytest_subprocess(
        *ARGS, "--sandbox-fake-clock=on", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=12)  # the auth example's 8 (4 move the clock) + 4
    found = finished(pytester.path / "r.jsonl")
    (hour,) = found["test_an_expired_token_is_refused_and_refresh_works"]["chaos"]
    assert hour["spec"] == "+3600.000000 x1" and hour["restored_spec"] == "+0 x1"
    (jump,) = found["test_a_token_expires_when_the_app_clock_jumps"]["chaos"]
    assert jump["kind"] == "clock" and jump["restored_spec"] == "+0 x1"
    assert abs(jump["app_offset_after_s"]) < 3  # the app's Date header, after the removal
    (back,) = found["test_the_marker_moves_the_app_clock_back"]["chaos"]
    assert back["spec"] == "-7200.000000 x1" and -7205 < back["app_offset_s"] < -7195
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_clock_without_fake_clock_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.clock(offset='+1h')\ndef test_c():\n    pass\n"
    )
    result = pytester.runpytest("--collect-only", *ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_c: @clock: the app runs without libfaketime*fake_clock = on*"]
    )


@pytest.fixture
def static_image(docker_client: docker.DockerClient) -> str:
    """The cluster's pause image (one static Go binary), loaded from cluster/build-images' cache."""
    try:
        docker_client.images.get(STATIC_IMAGE)
    except docker.errors.ImageNotFound:
        archive = PAUSE_ARCHIVE
        if not archive.exists():
            _unavailable(
                f"no {archive}: build it with `bash cluster/build-images --no-import pause`"
            )
        with archive.open("rb") as handle:
            docker_client.images.load(handle.read())
    return STATIC_IMAGE


def test_a_statically_linked_app_is_a_clear_setup_error(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    docker_scope: DockerScope,
    static_image: str,
) -> None:
    pytester.makepyfile("def test_nothing(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *ARGS[:-1], f"--sandbox-image=app={static_image}", "--sandbox-fake-clock=on"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*statically linked*LD_PRELOAD cannot load libfaketime*"])
    assert docker_scope.leftovers() == []

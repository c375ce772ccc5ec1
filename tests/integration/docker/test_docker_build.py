"""--sandbox-build on the docker backend (real engine), and the engine's push (real registry).

The docker backend builds in the engine and runs the image id (no registry); pushing is the
kube path, tried here against a registry that wants credentials (the cluster's registry binary).
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from pytest_livesandbox.errors import RegistryError
from pytest_livesandbox.images import engine
from pytest_livesandbox.images.context import BuildSpec
from pytest_livesandbox.images.registry import Registry
from tests.conftest import IsolatedState, changed_demo_app
from tests.integration.docker.conftest import DockerScope

DEMO_BASE = "localhost/livesandbox/python-psycopg:bookworm"

SEES_THE_CHANGE = """
def test_the_changed_source_answers(live_http, livesandbox):
    assert live_http.get("/healthz").json()["build"] == "{marker}"
    assert livesandbox.info.extra["digests"]["app"].startswith("sha256:")
"""


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_changed_source_is_built_and_run_then_reused_unchanged(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    docker_scope: DockerScope,
    docker_client: docker.DockerClient,
) -> None:
    marker = f"d{uuid.uuid4().hex[:10]}"
    app = changed_demo_app(pytester.path / "app", marker)
    pytester.makepyfile(test_x=SEES_THE_CHANGE.replace("{marker}", marker))
    pytester.makeini(
        "[pytest]\nlivesandbox_backend = docker\nlivesandbox_image = postgres=postgres:15\n"
        f"livesandbox_build = app={app}\nlivesandbox_build_arg = BASE={DEMO_BASE}\n"
        "livesandbox_health_path = /readyz\nlivesandbox_startup_timeout = 60s\n"
    )
    args = ("-p", "no:cacheprovider", "--sandbox-report=r.jsonl")
    first = pytester.runpytest_subprocess(*args, "--sandbox-html=r.html")
    first.assert_outcomes(passed=1)
    html = (pytester.path / "r.html").read_text()
    assert "Bring-up before the first test" in html and "<title>build: 0.00s" in html
    sandbox = events(pytester.path / "r.jsonl")[0]["sandbox"]
    build = sandbox["extra"]["builds"]["app"]
    assert build["built"] and not build["pushed"], build
    assert sandbox["timings"]["build_s"] > 0 and sandbox["timings"]["push_s"] == 0
    first.stdout.re_match_lines([r".*stages: build [\d.]+s, push 0.00s; ready at: db.*"])
    image = docker_client.images.get(sandbox["extra"]["digests"]["app"])
    assert f"livesandbox-build/app:{build['tag']}" in image.tags

    second = pytester.runpytest_subprocess(*args)
    second.assert_outcomes(passed=1)
    again = events(pytester.path / "r.jsonl")[0]["sandbox"]
    assert not again["extra"]["builds"]["app"]["built"]
    assert again["extra"]["digests"] == sandbox["extra"]["digests"]
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()
    docker_client.images.remove(image.id, force=True)


def test_failing_build_shows_the_log_tail_and_starts_nothing(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    app = changed_demo_app(pytester.path / "app", "broken")
    (app / "Dockerfile").write_text(
        f"FROM {DEMO_BASE}\nRUN echo 'pip: no matching distribution for nothing' && exit 1\n"
    )
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox=docker", f"--sandbox-build=app={app}"
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*BuildFailed: --sandbox-build app=*: the image build failed: *non-zero code: 1*",
            "*pip: no matching distribution for nothing*",
            "*Hint: reproduce with `docker build -f */Dockerfile *`*",
        ]
    )
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_push_needs_credentials_and_never_shows_them(
    auth_registry: tuple[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addr, password = auth_registry
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {DEMO_BASE}\nLABEL probe={uuid.uuid4().hex}\n")
    repository, tag = f"{addr}/lsbtest/probe", "ls-test"
    spec = BuildSpec("probe", context)
    registry = Registry(f"{addr}/lsbtest")

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-credentials"))
    client = engine.engine()
    engine.build(client, spec, f"{repository}:{tag}")
    with pytest.raises(RegistryError) as refused:
        engine.push(client, repository, tag)
    assert f"refused by {addr}" in str(refused.value)
    assert f"docker login {addr}" in str(refused.value)
    with pytest.raises(RegistryError, match="HTTP 401"):
        registry.manifest_digest("probe", tag)

    config = tmp_path / "with-credentials"
    config.mkdir()
    auth = base64.b64encode(f"lsbuser:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {addr: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    client = engine.engine()
    digest = engine.push(client, repository, tag)
    assert digest.startswith("sha256:")
    assert registry.manifest_digest("probe", tag) == digest
    assert registry.manifest_digest("probe", "ls-absent") is None
    assert password not in repr(registry) and password not in str(refused.value)
    docker_client.images.remove(f"{repository}:{tag}", force=True)

"""--sandbox-build on the real cluster: the Docker engine builds, the cluster's registry
(cluster/registry-up) stores, the kubelet pulls the pushed digest.

Each test changes a copy of the demo app (never examples/) and runs pytest once or twice
through pytester; nothing may be left behind (namespaces, state folders).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, IsolatedState, changed_demo_app

pytestmark = pytest.mark.kube
POSTGRES = "--sandbox-image=postgres=localhost/livesandbox/postgres:15"
MANIFESTS = REPO / "examples" / "demo_app" / "k8s"

SEES_THE_CHANGE = """
import os

from kubernetes import client, config


def test_the_changed_source_answers(live_http, livesandbox):
    assert live_http.get("/healthz").json()["build"] == "{marker}"
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    deployment = client.AppsV1Api(api).read_namespaced_deployment(
        "backend", livesandbox.info.namespace
    )
    container = deployment.spec.template.spec.containers[0]
    assert container.image == livesandbox.info.extra["digests"]["backend"]
    assert "@sha256:" in container.image and container.image_pull_policy == "IfNotPresent"
"""


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def namespaces_with_prefix(core: Any, prefix: str) -> list[str]:
    return [
        ns.metadata.name
        for ns in core.list_namespace().items
        if ns.metadata.name.startswith(prefix + "-")
    ]


@pytest.fixture
def build_run(
    pytester: pytest.Pytester, kube_client: Any, registry_addr: str
) -> tuple[pytest.Pytester, list[str]]:
    """pytester folder with the kube example's ini, and the arguments of a build run."""
    shutil.copy(REPO / "conftest_examples" / "kube" / "pytest.ini", pytester.path)
    ini = pytester.path / "pytest.ini"
    ini.write_text(ini.read_text().replace("../../examples/demo_app/k8s", str(MANIFESTS)))
    args = [
        "-p", "no:cacheprovider",
        POSTGRES,
        f"--sandbox-build-arg=BASE={registry_addr}/livesandbox/python-psycopg:bookworm",
        f"--sandbox-registry={registry_addr}/lsbtest",
        "--sandbox-report=r.jsonl",
    ]  # fmt: skip
    return pytester, args


def test_changed_source_is_built_pushed_deployed_then_reused_unchanged(
    build_run: tuple[pytest.Pytester, list[str]], isolated_state: IsolatedState, core: Any
) -> None:
    pytester, args = build_run
    marker = f"k{uuid.uuid4().hex[:10]}"
    app = changed_demo_app(pytester.path / "app", marker)
    pytester.makepyfile(test_x=SEES_THE_CHANGE.replace("{marker}", marker))

    first = pytester.runpytest_subprocess(*args, f"--sandbox-build=backend={app}")
    first.assert_outcomes(passed=1)
    sandbox = events(pytester.path / "r.jsonl")[0]["sandbox"]
    build = sandbox["extra"]["builds"]["backend"]
    assert build["built"] and build["pushed"], build
    assert sandbox["timings"]["build_s"] > 0 and sandbox["timings"]["push_s"] > 0
    registry = next(a for a in args if a.startswith("--sandbox-registry=")).split("=", 1)[1]
    assert sandbox["extra"]["digests"]["backend"].startswith(f"{registry}/backend@sha256:")
    first.stdout.re_match_lines([r".*stages: build [\d.]+s, push [\d.]+s.*"])
    assert not namespaces_with_prefix(core, sandbox["namespace"])

    second = pytester.runpytest_subprocess(*args, f"--sandbox-build=backend={app}")
    second.assert_outcomes(passed=1)
    again = events(pytester.path / "r.jsonl")[0]["sandbox"]
    reused = again["extra"]["builds"]["backend"]
    assert not reused["built"] and not reused["pushed"], reused
    assert again["extra"]["digests"] == sandbox["extra"]["digests"]
    assert again["timings"]["push_s"] == 0
    isolated_state.assert_clean()
    # The engine's copy of what this test built (the registry keeps its own).
    subprocess.run(["docker", "rmi", f"{registry}/backend:{build['tag']}"], capture_output=True)


BAD_INPUTS = {
    "missing-context": (
        "backend={tmp}/nope",
        ["*BuildFailed: --sandbox-build backend=*/nope: the build context * is not a folder*"],
    ),
    "missing-dockerfile": (
        "backend={app}:Dockerfile.prod",
        ["*BuildFailed: --sandbox-build backend=*: no Dockerfile at */Dockerfile.prod*"],
    ),
    "failing-build": (
        "backend={app}:Dockerfile.broken",
        [
            "*BuildFailed: --sandbox-build backend=*: the image build failed: *non-zero*",
            "*Last lines of the build log:*",
            "*config check failed: SETTINGS missing*",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_build_input_fails_at_provisioning_leaving_nothing(
    case: str,
    build_run: tuple[pytest.Pytester, list[str]],
    isolated_state: IsolatedState,
    core: Any,
) -> None:
    pytester, args = build_run
    app = changed_demo_app(pytester.path / "app", "bad")
    (app / "Dockerfile.broken").write_text(
        "ARG BASE\nFROM ${BASE}\nRUN echo 'config check failed: SETTINGS missing' && exit 3\n"
    )
    (app / ".dockerignore").write_text("*\n!app.py\n")
    build, lines = BAD_INPUTS[case]
    prefix = f"bld{uuid.uuid4().hex[:6]}"
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *args,
        "--sandbox-build=" + build.format(tmp=pytester.path, app=app),
        f"--sandbox-namespace-prefix={prefix}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(lines)
    assert "Traceback" not in result.stdout.str()
    assert namespaces_with_prefix(core, prefix) == []
    isolated_state.assert_clean()


def test_unreachable_registry_is_named_before_anything_is_built(
    build_run: tuple[pytest.Pytester, list[str]], isolated_state: IsolatedState, core: Any
) -> None:
    pytester, args = build_run
    app = changed_demo_app(pytester.path / "app", "unreachable")
    prefix = f"bld{uuid.uuid4().hex[:6]}"
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    began = time.monotonic()
    result = pytester.runpytest_subprocess(
        *[a for a in args if not a.startswith("--sandbox-registry")],
        "--sandbox-registry=127.0.0.1:9/lsbtest",
        f"--sandbox-build=backend={app}",
        f"--sandbox-namespace-prefix={prefix}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*RegistryError: --sandbox-registry 127.0.0.1:9/lsbtest: the registry at "
         "http://127.0.0.1:9 does not answer*"]
    )  # fmt: skip
    assert time.monotonic() - began < 60
    assert namespaces_with_prefix(core, prefix) == []
    isolated_state.assert_clean()


def test_push_without_credentials_is_refused_with_a_hint_and_no_secret(
    build_run: tuple[pytest.Pytester, list[str]],
    isolated_state: IsolatedState,
    core: Any,
    auth_registry: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytester, args = build_run
    addr, _password = auth_registry
    app = changed_demo_app(pytester.path / "app", f"auth{uuid.uuid4().hex[:6]}")
    prefix = f"bld{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *[a for a in args if not a.startswith("--sandbox-registry")],
        f"--sandbox-registry={addr}/lsbtest",
        f"--sandbox-build=backend={app}",
        f"--sandbox-namespace-prefix={prefix}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*RegistryError: --sandbox-registry {addr}/lsbtest: the registry refused*HTTP 401*"
            f"Hint: log in with `docker login {addr}`*"
        ]
    )  # fmt: skip
    assert namespaces_with_prefix(core, prefix) == []
    isolated_state.assert_clean()

"""--sandbox-build against a registry with Bearer-token auth (Docker Hub's and Artifact Registry's
scheme), for real: tests/tokenauth.py starts a token service and an auth-checking front door in
front of the cluster's registry; credentials come from a Docker config file, as `docker login`
writes it.

The Docker engine pushes through the front door (401 challenge, token from the realm with the
config's credentials), our own client asks ``HEAD manifests/<tag>`` the same way, the kubelet
pulls the digest with an anonymous pull token. A wrong password is a RegistryError naming the
token service; neither the password nor any token appears in any output.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, IsolatedState, changed_demo_app
from tests.integration.kube.test_build_from_source import (
    MANIFESTS,
    POSTGRES,
    SEES_THE_CHANGE,
    events,
    namespaces_with_prefix,
)
from tests.tokenauth import TokenAuthRegistry

pytestmark = pytest.mark.kube
USER = "lsbuser"


@pytest.fixture
def token_registry(registry_addr: str) -> Iterator[TokenAuthRegistry]:
    """The token service and front door, forwarding to the cluster's registry."""
    with TokenAuthRegistry(registry_addr, USER, f"pw-{uuid.uuid4().hex}") as front:
        yield front


def docker_config(folder: Path, host: str, user: str, password: str) -> Path:
    """A Docker config folder with ``auths`` for ``host`` (what `docker login` writes)."""
    folder.mkdir(parents=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def run_args(pytester: pytest.Pytester, registry_addr: str, front: TokenAuthRegistry) -> list[str]:
    shutil.copy(REPO / "conftest_examples" / "kube" / "pytest.ini", pytester.path)
    ini = pytester.path / "pytest.ini"
    ini.write_text(ini.read_text().replace("../../examples/demo_app/k8s", str(MANIFESTS)))
    return [
        "-p", "no:cacheprovider", POSTGRES,
        f"--sandbox-build-arg=BASE={registry_addr}/livesandbox/python-psycopg:bookworm",
        f"--sandbox-registry={front.addr}/lsbtest",
        "--sandbox-report=r.jsonl", "--sandbox-html=r.html", "--junitxml=j.xml",
    ]  # fmt: skip


def outputs(pytester: pytest.Pytester, result: pytest.RunResult) -> str:
    """Everything a user could read: terminal, JSONL, HTML, JUnit."""
    files = [pytester.path / name for name in ("r.jsonl", "r.html", "j.xml")]
    texts = [result.stdout.str(), result.stderr.str()]
    return "\n".join(texts + [f.read_text(errors="replace") for f in files if f.exists()])


def assert_no_secret(text: str, front: TokenAuthRegistry) -> None:
    assert front.password not in text
    assert front.issued, "no token was handed out"
    leaked = [token for token in front.issued if token in text]
    assert not leaked, "a registry token appears in the output"


def test_build_push_deploy_and_reuse_through_bearer_token_auth(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    registry_addr: str,
    token_registry: TokenAuthRegistry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    front = token_registry
    config = docker_config(tmp_path / "docker", front.addr, USER, front.password)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    args = run_args(pytester, registry_addr, front)
    marker = f"t{uuid.uuid4().hex[:10]}"
    app = changed_demo_app(pytester.path / "app", marker)
    pytester.makepyfile(test_x=SEES_THE_CHANGE.replace("{marker}", marker))

    first = pytester.runpytest_subprocess(*args, f"--sandbox-build=backend={app}")
    first.assert_outcomes(passed=1)
    sandbox = events(pytester.path / "r.jsonl")[0]["sandbox"]
    build = sandbox["extra"]["builds"]["backend"]
    assert build["built"] and build["pushed"], build
    assert sandbox["extra"]["digests"]["backend"].startswith(
        f"{front.addr}/lsbtest/backend@sha256:"
    )
    # Real token auth happened: challenges, tokens for our credentials, the push behind them, and
    # the kubelet's pull of the digest with an anonymous (pull-only) token.
    assert ("HEAD", f"/v2/lsbtest/backend/manifests/{build['tag']}", 401) in front.seen
    assert ("PUT", f"/v2/lsbtest/backend/manifests/{build['tag']}", 201) in front.seen
    assert ("GET", True) in front.token_requests
    digest = build["digest"]
    pulled = [s for s in front.seen if s[1] == f"/v2/lsbtest/backend/manifests/{digest}"]
    assert any(status == 200 for _, _, status in pulled), front.seen[-10:]
    assert ("GET", False) in front.token_requests
    assert_no_secret(outputs(pytester, first), front)

    # Unchanged: our own client's HEAD (with a token) finds the tag; neither build nor push.
    pushes = [s for s in front.seen if s[0] in ("POST", "PUT", "PATCH")]
    second = pytester.runpytest_subprocess(*args, f"--sandbox-build=backend={app}")
    second.assert_outcomes(passed=1)
    reused = events(pytester.path / "r.jsonl")[0]["sandbox"]["extra"]["builds"]["backend"]
    assert not reused["built"] and not reused["pushed"], reused
    assert [s for s in front.seen if s[0] in ("POST", "PUT", "PATCH")] == pushes
    assert ("HEAD", f"/v2/lsbtest/backend/manifests/{build['tag']}", 200) in front.seen
    assert_no_secret(outputs(pytester, second), front)
    assert not namespaces_with_prefix(core, sandbox["namespace"])
    isolated_state.assert_clean()
    subprocess.run(
        ["docker", "rmi", f"{front.addr}/lsbtest/backend:{build['tag']}"], capture_output=True
    )


def test_a_wrong_password_is_a_registry_error_naming_the_token_service(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    registry_addr: str,
    token_registry: TokenAuthRegistry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    front = token_registry
    wrong = f"wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "d", front.addr, USER, wrong)))
    args = run_args(pytester, registry_addr, front)
    app = changed_demo_app(pytester.path / "app", f"w{uuid.uuid4().hex[:8]}")
    prefix = f"tok{uuid.uuid4().hex[:6]}"
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *args, f"--sandbox-build=backend={app}", f"--sandbox-namespace-prefix={prefix}"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*RegistryError: --sandbox-registry {front.addr}/lsbtest: the token service "
            f"{front.realm} (HTTP 401) refused the credentials for {front.addr} from the Docker "
            f"config. Hint: log in again with `docker login {front.addr}`*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert ("GET", True) in front.token_requests
    text = outputs(pytester, result)
    assert wrong not in text and front.password not in text
    assert not [s for s in front.seen if s[0] in ("POST", "PUT", "PATCH")]  # nothing pushed
    assert namespaces_with_prefix(core, prefix) == []
    isolated_state.assert_clean()


def test_without_credentials_the_anonymous_token_pulls_but_the_push_is_refused(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    registry_addr: str,
    token_registry: TokenAuthRegistry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Docker Hub's public-repository behaviour: anyone gets a pull token, pushing needs a login.
    front = token_registry
    empty = tmp_path / "empty-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    args = run_args(pytester, registry_addr, front)
    app = changed_demo_app(pytester.path / "app", f"a{uuid.uuid4().hex[:8]}")
    prefix = f"tok{uuid.uuid4().hex[:6]}"
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *args, f"--sandbox-build=backend={app}", f"--sandbox-namespace-prefix={prefix}"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*RegistryError: pushing {front.addr}/lsbtest/backend:ls-* was refused by "
            f"{front.addr}: *Hint: give the engine credentials for it (`docker login {front.addr}`*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # Our HEAD went through with an anonymous token (the tag was absent), the push did not.
    assert ("GET", False) in front.token_requests and ("GET", True) not in front.token_requests
    assert not [s for s in front.seen if s[0] in ("PUT", "PATCH") or s[2] in (201, 202)]
    assert_no_secret(outputs(pytester, result), front)
    assert namespaces_with_prefix(core, prefix) == []
    isolated_state.assert_clean()
    repository = f"{front.addr}/lsbtest/backend"
    built = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if built:
        subprocess.run(["docker", "rmi", *built], capture_output=True)

"""The docker fault proxy's control token, on the real daemon.

The control API listens on the proxy container's address, so the sandbox network reaches it
(``fault-proxy:8474``): from inside the app container a control request without the token, or
with a guessed one, gets 401 and installs nothing, while the plugin's own chaos (on an xdist
worker: the token came through the handoff) works. The token is in no ``docker inspect`` output,
not in the app container's environment or process list, and in no report file or output of the
run, even when a test prints it and fails with it. A reused sandbox (``--sandbox-reuse`` twice)
still controls its proxy (the token came back from ``secrets.json``, never from ``warm.json``).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import IsolatedState
from tests.integration.docker.conftest import DockerScope
from tests.integration.docker.test_docker_reuse import OPTS, REUSE, remove_warm

# Run in the app container with its python3: what the app under test could do on its network.
PROBE = r"""
import http.client, json
toxic = {"kind": "latency", "direction": "both", "params": {"ms": 500}, "owner_pid": 0}
found = []
for headers in ({}, {"Authorization": "Bearer guessed-token-1234567890"}):
    for method, path, body in (("GET", "/health", None), ("GET", "/routes", None),
                               ("POST", "/routes/app/toxics", toxic),
                               ("POST", "/routes/db/toxics", toxic), ("DELETE", "/toxics", None)):
        conn = http.client.HTTPConnection("fault-proxy", 8474, timeout=5)
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        response = conn.getresponse()
        found.append([method, path, response.status, json.loads(response.read())])
print(json.dumps(found))
"""

INNER = f"""
import json
from pathlib import Path

import pytest

from pytest_livesandbox.backends.docker.host import connect
from pytest_livesandbox.faultproxy.client import ProxyClient

PROBE = {PROBE!r}
HERE = Path(__file__).parent


def test_the_app_network_cannot_control_the_proxy(livesandbox):
    info = livesandbox.info
    token = info.tokens["fault_proxy"]
    (HERE / "token.secret").write_text(token)  # for the outer test; no sink reads this file
    client = connect()
    app = client.containers.get(info.extra["containers"]["app"])
    code, output = app.exec_run(["python3", "-c", PROBE])
    assert code == 0, output
    answers = json.loads(output)
    assert len(answers) == 10
    for method, path, status, body in answers:
        assert status == 401, (method, path, status, body)
        assert body == {{"error": "unauthorized: this proxy needs its control token"}}
    proxy = ProxyClient.from_info(info)
    assert proxy is not None  # the probe's toxics (500 ms, no owner) were not installed; the
    # plugin's own (another worker's chaos test) may be there
    assert [t for t in proxy.toxics() if not t["owner"] or t["params"].get("ms") == 500] == []
    for name in info.extra["containers"].values():
        assert token not in json.dumps(client.containers.get(name).attrs), name
    code, output = app.exec_run(
        ["python3", "-c", "import glob\\n"
         "for p in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\\n"
         "    try: print(open(p, 'rb').read())\\n"
         "    except OSError: pass"]
    )
    assert code == 0 and b"DATABASE_URL" in output and token.encode() not in output
    proxy_container = client.containers.get(info.extra["containers"]["proxy"])
    code, output = proxy_container.exec_run(
        ["python3", "-c", "import os; s = os.stat('/opt/livesandbox-faultproxy/control-token');"
         "print(oct(s.st_mode & 0o777), s.st_uid, s.st_gid)"]
    )
    assert output.split() == [b"0o400", b"65532", b"65532"], output


@pytest.mark.latency(ms=300, target="app")
def test_the_plugins_own_chaos_still_works(live_http):
    response = live_http.get("/healthz")
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.29


def test_a_test_that_prints_and_fails_with_the_token(livesandbox):
    token = livesandbox.info.tokens["fault_proxy"]
    print("control token:", token, "raw", token)
    assert token == "", f"the token is {{token}}"
"""


def test_the_sandbox_network_gets_401_and_the_token_is_in_no_report(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_token=INNER)
    result = pytester.runpytest_subprocess(
        *OPTS,
        "-n",
        "2",
        "-rA",
        "--sandbox-report=r.jsonl",
        "--sandbox-html=r.html",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=2, failed=1)
    token = (pytester.path / "token.secret").read_text()
    assert len(token) >= 43
    outputs = {"stdout": result.stdout.str(), "stderr": result.stderr.str()}
    for path in pytester.path.rglob("*"):
        if path.is_file() and path.name != "token.secret":
            outputs[str(path.relative_to(pytester.path))] = path.read_text(errors="replace")
    assert {"r.jsonl", "r.html", "junit.xml"} <= set(outputs)
    leaked = [name for name, text in outputs.items() if token in text]
    assert leaked == [], f"the control token is in {leaked}"
    assert "the token is ***" in outputs["stdout"]  # redacted, not dropped
    started = json.loads(outputs["r.jsonl"].splitlines()[0])
    assert started["sandbox"]["tokens"] == {"fault_proxy": ""}  # known to exist, never shown
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


REUSED = """
import pytest

from pytest_livesandbox.faultproxy.client import ProxyClient


@pytest.mark.latency(ms=300, target="app")
def test_chaos_on_the_reused_proxy(live_http, livesandbox):
    assert live_http.get("/healthz").elapsed.total_seconds() >= 0.29
    proxy = ProxyClient.from_info(livesandbox.info)
    assert proxy is not None and [t["kind"] for t in proxy.toxics()] == ["latency"]
"""


def test_a_reused_sandbox_still_controls_its_proxy(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_reused=REUSED)
    first = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r1.jsonl")
    first.assert_outcomes(passed=1)
    (folder,) = [p for p in isolated_state.path.iterdir() if (p / "secrets.json").exists()]
    assert oct((folder / "secrets.json").stat().st_mode & 0o777) == "0o600"
    secrets = (folder / "secrets.json").read_text()
    assert '"fault_proxy": "' in secrets and '"fault_proxy": ""' not in secrets
    token = secrets.split('"fault_proxy": "')[1].split('"')[0]
    assert token not in (folder / "warm.json").read_text()
    second = pytester.runpytest_subprocess(*REUSE, "--sandbox-report=r2.jsonl")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*(docker) reused, ready in *"])
    for report in ("r1.jsonl", "r2.jsonl"):
        assert token not in (pytester.path / report).read_text()
    remove_warm(docker_scope, isolated_state)

"""The fault proxy's control token: a real server process on loopback started with --token-file.

Without ``Authorization: Bearer <token>`` (or with another token or scheme) every control request
is refused with 401 and a JSON error, and nothing changes; :class:`ProxyClient` with the token
(also as :meth:`ProxyClient.from_info` finds it) works. The token never shows in the client's
``repr``, its errors, the info's public form, and it is redacted like the passwords.
"""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_livesandbox.backends.docker.faultproxy import TOKEN_FILE, code_archive, new_token
from pytest_livesandbox.errors import ChaosError
from pytest_livesandbox.faultproxy import SERVER_SCRIPT
from pytest_livesandbox.faultproxy.client import EXTRA_KEY, ProxyClient
from pytest_livesandbox.info import DatabaseInfo, SandboxInfo
from pytest_livesandbox.redaction import redact


@dataclass
class Server:
    port: int
    token: str
    process: subprocess.Popen[bytes]


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(SERVER_SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("auth")
    token = new_token()
    (folder / "token").write_text(token + "\n")  # surrounding whitespace is not the token
    state = folder / "proxy.json"
    process = spawn("--state-file", str(state), "--token-file", str(folder / "token"))
    deadline = time.monotonic() + 10
    while not state.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    try:
        yield Server(int(json.loads(state.read_text())["control_port"]), token, process)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=5)
        assert token.encode() not in out + err  # the proxy never prints its token


def raw(
    port: int, method: str, path: str, headers: dict[str, str], body: object = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


TOXIC = {"kind": "latency", "direction": "both", "params": {"ms": 50}, "owner_pid": 0}


def test_requests_without_the_token_get_401_and_change_nothing(server: Server) -> None:
    good = ProxyClient(server.port, token=server.token)
    good.set_route("db", "127.0.0.1:9")
    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {server.token[:-1]}"},
        {"Authorization": f"Basic {server.token}"},
        {"Authorization": server.token},
        {"Authorization": "Bearer"},
    ):
        for method, path, body in (
            ("GET", "/health", None),
            ("GET", "/routes", None),
            ("POST", "/routes/db/toxics", TOXIC),
            ("PUT", "/routes/evil", {"upstream": "127.0.0.1:1"}),
            ("DELETE", "/toxics", None),
        ):
            status, answer = raw(server.port, method, path, headers, body)
            assert status == 401, (headers, method, path, answer)
            assert answer == {"error": "unauthorized: this proxy needs its control token"}
    assert set(good.routes()) == {"db"} and good.toxics() == []
    status, answer = raw(server.port, "GET", "/health", {"Authorization": f"bearer {server.token}"})
    assert status == 200 and answer["ok"] is True  # the scheme is case-insensitive


def test_the_client_with_the_token_controls_the_proxy(server: Server) -> None:
    info = SandboxInfo(
        "abcd1234",
        "docker",
        "run-1",
        "me",
        0.0,
        db=DatabaseInfo("127.0.0.1", 5432, "app", "app", "app-password-1"),
        extra={EXTRA_KEY: {"control_port": server.port}},
        tokens={EXTRA_KEY: server.token},
    )
    client = ProxyClient.from_info(info)
    assert client is not None and client.health()
    client.set_route("app", "127.0.0.1:9")
    toxic = client.add_toxic("app", "latency", "both", {"ms": 10}, owner="t", owner_pid=0)
    assert [t["id"] for t in client.toxics()] == [toxic["id"]]
    assert client.clear() == 1
    assert server.token not in repr(client)
    # Workers get it through the handoff (to_json with secrets), reports never.
    assert SandboxInfo.from_json(info.to_json(secrets=True)).tokens == info.tokens
    public = json.dumps(info.public())
    assert server.token not in public and server.token not in repr(info)
    assert server.token in info.secret_values()
    assert server.token not in redact(f"token {server.token} leaked", info.secret_values())


def test_a_client_without_or_with_a_wrong_token_gets_one_readable_error(server: Server) -> None:
    assert not ProxyClient(server.port).health()
    wrong = ProxyClient(server.port, token="x" * 43)
    with pytest.raises(ChaosError, match=r"401.*control token is missing") as caught:
        wrong.add_toxic("db", "latency", "both", {"ms": 10}, owner_pid=0)
    assert server.token not in str(caught.value) and "x" * 43 not in str(caught.value)
    info = SandboxInfo("abcd1234", "docker", "r", "me", 0.0, extra={EXTRA_KEY: {"control_port": 1}})
    assert ProxyClient.from_info(info) is not None  # no token known: sends none (local, kube)


def test_a_missing_or_empty_token_file_stops_the_server_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    for name, why in (("missing", "cannot read it"), ("empty", "the file is empty")):
        process = spawn("--token-file", str(tmp_path / name))
        _, err = process.communicate(timeout=10)
        assert process.returncode == 1 and why in err.decode(), err


def test_the_docker_archive_carries_the_token_for_the_proxy_user_only() -> None:
    token = new_token()
    assert len(token) >= 43 and token != new_token()
    with tarfile.open(fileobj=io.BytesIO(code_archive(token))) as tar:
        entry = tar.getmember(TOKEN_FILE.lstrip("/"))
        assert (entry.mode, entry.uid, entry.gid) == (0o400, 65532, 65532)
        extracted = tar.extractfile(entry)
        assert extracted is not None and extracted.read() == token.encode()

"""Docker start-up errors read like local's, and app restarts are counted: real engine, pytester.

The app image here is a real app in the style of uvicorn: it prints its DATABASE_URL, writes one
access-log line per request (so every readiness probe of ours leaves a line) and then crashes,
or never gets ready. The error must show the cause, the app's own last words (password
redacted, no probe lines) and the fix.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope

NOISY_APP = """
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting with", os.environ["DATABASE_URL"], flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()


server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(float(os.environ.get("CRASH_AFTER", "600")))
print("fatal: cannot reach the cache at redis://cache:6379", flush=True)
sys.exit(3)
"""

DOCKERFILE = f"""
FROM {DEMO_APP_IMAGE}
COPY noisy.py /app/noisy.py
CMD ["python3", "-u", "/app/noisy.py"]
"""


@pytest.fixture(scope="module")
def noisy_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The noisy app as an image of its own (removed after the module)."""
    tag = f"localhost/livesandbox/test-noisy-app:{uuid.uuid4().hex[:10]}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE), ("noisy.py", NOISY_APP)):
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def run(pytester: pytest.Pytester, image: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_x="def test_a(live_url):\n    pass\n")
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox=docker", f"--sandbox-image=app={image}",
        "--sandbox-health-path=/readyz", *args,
    )  # fmt: skip


def assert_reads_like_local(out: str) -> None:
    """The app's own last words, redacted, and none of our probe's access-log lines."""
    assert "Last output:" in out, out
    assert "starting with postgresql://app:***@fault-proxy:15432/app" in out, out
    assert "GET /readyz" not in out, out
    assert not re.search(r"postgresql://app:(?!\*\*\*)[^@]+@", out), out


def test_crashing_app_shows_its_last_words_without_probe_lines(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    docker_scope: DockerScope,
    noisy_image: str,
) -> None:
    result = run(pytester, noisy_image, "--sandbox-app-env=CRASH_AFTER=2.5")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            f"*AppCrashed: the app container (image {noisy_image}) exited with code 3 during "
            "start-up.",
            "Last output:",
            "starting with postgresql://app:***@fault-proxy:15432/app*",
            "fatal: cannot reach the cache at redis://cache:6379",
            "Hint: run the image yourself with DATABASE_URL and PORT set*",
        ]
    )
    assert_reads_like_local(out)
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_never_ready_app_times_out_with_one_probe_line_and_its_output(
    pytester: pytest.Pytester,
    isolated_state: IsolatedState,
    docker_scope: DockerScope,
    noisy_image: str,
) -> None:
    # (The timeout holds for PostgreSQL's start too: room for it on a loaded machine.)
    result = run(pytester, noisy_image, "--sandbox-startup-timeout=15s")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*StartupTimeout: the app (http://127.0.0.1:*/readyz) was not ready after *s.",
            "Last probe: HTTP 503: .",
            "Last output:",
            "starting with postgresql://app:***@fault-proxy:15432/app*",
            "Hint: check the health path (--sandbox-health-path)*",
        ]
    )
    assert out.count("Last probe:") == 1
    assert_reads_like_local(out)
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


RESTARTS = """
import os
import signal
import time

import docker


def test_crash(livesandbox, live_http):
    client = docker.from_env()
    app = client.containers.get(livesandbox.info.extra["containers"]["app"])
    # Killed from outside, like the OOM killer does (`docker kill` would count as meant and
    # not be restarted): the on-failure policy brings it back.
    os.kill(app.attrs["State"]["Pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        app.reload()
        if app.attrs["RestartCount"] >= 1 and app.status == "running":
            break
        assert time.monotonic() < deadline, app.status
        time.sleep(0.2)
    while time.monotonic() < deadline:
        try:
            if live_http.get("/readyz").status_code == 200:
                break
        except Exception:
            pass
        time.sleep(0.2)


def test_quiet(live_http):
    assert live_http.get("/readyz").status_code == 200
"""


def test_app_restart_outside_chaos_is_reported(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(test_x=RESTARTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--sandbox=docker",
        f"--sandbox-image=app={DEMO_APP_IMAGE}", "--sandbox-health-path=/readyz",
        "--sandbox-report=r.jsonl",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["the app restarted 1x during test_x.py::test_crash*"])
    report = (pytester.path / "r.jsonl").read_text()
    finished = [e for e in map(json.loads, report.splitlines()) if e["event"] == "test_finished"]
    assert [e.get("app_restarts") for e in finished] == [1, None]
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

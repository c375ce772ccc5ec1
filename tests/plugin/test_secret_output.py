"""Passwords never reach any output, also when the sandbox fails before it exists."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import IsolatedState

# The app prints its DATABASE_URL, the password alone and URL-encoded, keeps a copy for the test
# (in a file no sink reads) and then crashes or answers its probe with the secrets in the body.
LEAKY_APP = """
import os, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

url = os.environ["DATABASE_URL"]
password = urllib.parse.urlsplit(url).password
open("password.txt", "w").write(password)
print("connecting to", url, flush=True)
print("password:", password, "encoded:", urllib.parse.quote(password), flush=True)
if sys.argv[1] == "crash":
    sys.exit(4)

class Leak(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"db down: {url} pw {password}".encode()
        self.send_response(500)
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Leak).serve_forever()
"""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("crash", "*AppCrashed: the app exited with code 4 during start-up*"),
        ("serve", "*StartupTimeout: the app (http://127.0.0.1:*/healthz) was not ready after 2s*"),
    ],
)
def test_failed_start_up_prints_no_password(
    pytester: pytest.Pytester, isolated_state: IsolatedState, mode: str, expected: str
) -> None:
    pytester.makepyfile(
        leaky=LEAKY_APP,
        test_x="def test_a(live_url):\n    pass\n\ndef test_b(live_url):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={sys.executable} leaky.py {mode}",
        "--sandbox-startup-timeout=2s",
        "--sandbox-report=r.jsonl",
        "--sandbox-html=r.html",
        "--junitxml=junit.xml",
        "-rA",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([expected])
    password = (pytester.path / "password.txt").read_text()
    assert len(password) >= 16
    outputs = {
        "stdout": result.stdout.str(),
        "stderr": result.stderr.str(),
        "jsonl": (pytester.path / "r.jsonl").read_text(),
        "html": (pytester.path / "r.html").read_text(),
        "junit": (pytester.path / "junit.xml").read_text(),
    }
    leaked = [name for name, text in outputs.items() if password in text]
    assert leaked == [], f"the password is in {leaked}"
    # The redacted lines are still there: the user sees what the app said.
    assert "connecting to postgresql://app:***@127.0.0.1:" in outputs["stdout"]
    assert "password: *** encoded: ***" in outputs["stdout"]
    isolated_state.assert_clean()


COMPARES_THE_PASSWORD = """
def test_password(livesandbox):
    password = livesandbox.info.db.password
    open("password.txt", "w").write(password)
    assert password == ""
"""


def test_a_failing_assert_on_the_password_shows_no_piece_of_it(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    # pytest shortens long values to their head and tail around "..." (the assertion diff, the
    # short summary line cut to the terminal's width): pieces of the password, not the whole.
    pytester.makepyfile(test_pw=COMPARES_THE_PASSWORD)
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        "--sandbox-report=r.jsonl",
        "--sandbox-html=r.html",
        "--junitxml=junit.xml",
        "-rA",
    )
    result.assert_outcomes(failed=1)
    password = (pytester.path / "password.txt").read_text()
    assert len(password) >= 16
    outputs = {
        "stdout": result.stdout.str(),
        "jsonl": (pytester.path / "r.jsonl").read_text(),
        "html": (pytester.path / "r.html").read_text(),
        "junit": (pytester.path / "junit.xml").read_text(),
    }
    pieces = {password[i : i + 8] for i in range(len(password) - 7)}
    leaked = {name: [p for p in pieces if p in text] for name, text in outputs.items()}
    assert {name: found for name, found in leaked.items() if found} == {}
    assert "AssertionError: assert '***...***' == ''" in outputs["stdout"]
    isolated_state.assert_clean()

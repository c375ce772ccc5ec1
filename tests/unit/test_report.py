"""Report building blocks, directly: redaction, HTML rendering, the webhook over real HTTP."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_livesandbox.redaction import redact, redact_data
from pytest_livesandbox.report.artifacts import artifact_root, prepare_root, slug
from pytest_livesandbox.report.html import HtmlSink, render
from pytest_livesandbox.report.webhook import WebhookPolicy, WebhookSink
from tests.receiver import receiving


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:pw-123456@h:5432/app", "postgresql://app:***@h:5432/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("PGPASSWORD=abc psql", "PGPASSWORD=*** psql"),
        ('{"password": "x y z", "user": "app"}', '{"password": ***, "user": "app"}'),
        ("db_password: 's3'", "db_password: ***"),
        ("GITHUB_TOKEN=ghp_abcdef next", "GITHUB_TOKEN=*** next"),
        ("ALTER ROLE app PASSWORD 'it''s'", "ALTER ROLE app PASSWORD ***"),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        # Ordinary text stays as it is.
        ("GET /items/1 200 3.1", "GET /items/1 200 3.1"),
        ("https://user@example.com/x", "https://user@example.com/x"),
        ("3 tokens left; passed in 2s", "3 tokens left; passed in 2s"),
        ("postgresql://app:***@h:1/db", "postgresql://app:***@h:1/db"),
    ],
)
def test_redact_generic_forms(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_known_secrets_anywhere_but_not_short_ones() -> None:
    secret = "0f3c9a1b2e4d5f60"
    assert redact(f"x{secret}y and {secret}", [secret]) == "x***y and ***"
    assert redact("a b c", ["b"]) == "a b c"  # too short to be a secret worth mangling text for
    event = {"nodeid": "t.py::test", "message": [f"dsn with {secret}"], "n": 3}
    expected = {"nodeid": "t.py::test", "message": ["dsn with ***"], "n": 3}
    assert redact_data(event, [secret]) == expected


def test_artifact_folders() -> None:
    assert artifact_root(Path("o/r.jsonl"), Path("o/r.html")) == Path("o/r.jsonl.artifacts")
    assert artifact_root(None, Path("o/r.html")) == Path("o/r.html.artifacts")
    assert artifact_root(None, None) is None
    assert slug("a/b.py::t[x/y]") != slug("a/b.py::t[x_y]")
    assert "/" not in slug("a/b.py::t[x/y]") and len(slug("x" * 500)) < 120


def test_prepare_root_only_empties_a_folder_it_made(tmp_path: Path) -> None:
    foreign = tmp_path / "someone.artifacts"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    prepare_root(foreign)
    assert (foreign / "keep.txt").exists()  # no marker: not ours, nothing removed
    ours = tmp_path / "r.jsonl.artifacts"
    prepare_root(ours)
    (ours / "old-test").mkdir()
    prepare_root(ours)
    assert not (ours / "old-test").exists() and (ours / ".livesandbox-artifacts").is_file()


def _events(tmp_path: Path) -> list[dict]:
    t = time.time()
    base = {"schema": 1, "sandbox_id": "3f9c2a1b"}
    tests = [
        {"nodeid": "t.py::test_ok", "outcome": "passed", "worker": "gw0", "chaos": []},
        {
            "nodeid": "t.py::test_slow_db[<i>x]",
            "outcome": "failed",
            "worker": "gw1",
            "chaos": [
                {"kind": "latency", "target": "db", "params": {"ms": 300}, "applied_at": t + 1.1}
            ],
            "artifacts": [str(tmp_path / "r.jsonl.artifacts" / "x" / "app.log")],
            "message": "E   assert 503 == 200",
        },
        {"nodeid": "t.py::test_skip", "outcome": "skipped", "worker": "gw0", "chaos": []},
    ]
    return [
        {**base, "event": "run_started", "time": t, "run_id": "r1", "backend": "local",
         "sandbox": {"id": "3f9c2a1b", "endpoint": "http://127.0.0.1:1", "timings": {}}},
        *({**base, "event": "test_finished", "time": t + i + 1, "started": t + i,
           "finished": t + i + 0.8, "duration": 0.8, "setup": 0.1, "call": 0.6,
           "teardown": 0.1, "artifacts": [], **test} for i, test in enumerate(tests)),
        {**base, "event": "run_finished", "time": t + 5, "counts": {}, "duration": 5.0,
         "teardown_s": 0.1, "exitstatus": 1},
    ]  # fmt: skip


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_self_contained_and_lists_everything(tmp_path: Path) -> None:
    sink = HtmlSink(tmp_path / "r.html")
    for event in _events(tmp_path):
        sink.emit(event)
    sink.close()
    doc = (tmp_path / "r.html").read_text()
    parsed = _Collect()
    parsed.feed(doc)
    text = "".join(parsed.text)
    for nodeid in ("t.py::test_ok", "t.py::test_slow_db[<i>x]", "t.py::test_skip"):
        assert nodeid in text
    # No network: nothing loaded from elsewhere.
    assert not [a for _, a in parsed.tags if a.get("src") or a.get("rel") == "stylesheet"]
    assert "http://" not in doc.replace("http://127.0.0.1:1", "")
    assert ("a", {"href": "r.jsonl.artifacts/x/app.log"}) in parsed.tags
    lanes = {a.get("class") for tag, a in parsed.tags if tag == "rect"}
    assert {"t passed", "t failed", "t skipped", "fault"} <= lanes
    assert "latency(db, ms=300)" in text
    assert "<i>x" not in doc and "&lt;i&gt;x" in doc  # nodeids are escaped


def test_html_report_of_a_run_that_never_finished(tmp_path: Path) -> None:
    doc = render(_events(tmp_path)[:1], tmp_path)
    assert "incomplete" in doc and "No tests ran." in doc


def test_webhook_delivers_in_order_and_retries_server_errors() -> None:
    with receiving(fail_first=2) as receiver:
        sink = WebhookSink(receiver.url, WebhookPolicy(backoff=0.01))
        for i in range(50):
            sink.emit({"event": "test_finished", "i": i})
        sink.close()
    assert [body["i"] for body in receiver.bodies] == list(range(50))
    assert sink.delivered == 50 and sink.problem is None
    assert sink.summary().endswith(": 50/50 events delivered")


def test_webhook_to_a_dead_receiver_is_bounded_and_says_so() -> None:
    with receiving() as receiver:
        url = receiver.url + "?token=abc123secret"
    sink = WebhookSink(url, WebhookPolicy(backoff=0.01, flush_deadline=3))
    began = time.monotonic()
    for i in range(200):
        sink.emit({"i": i})
    emitting = time.monotonic() - began
    sink.close()
    assert emitting < 1.0  # emit only queues; the sender thread does the waiting
    assert sink.delivered == 0 and sink.lost == 200
    assert sink.problem is not None and "200 of 200 events not delivered" in sink.problem
    assert "abc123secret" not in sink.problem and "ConnectError" in sink.problem

"""The last lines of a log without our probes' access-log lines (pure functions)."""

from __future__ import annotations

from pathlib import Path

from pytest_livesandbox.logtail import last_lines, probe_lines, tail

UVICORN = """INFO:     Started server process [7]
INFO:     127.0.0.1:50412 - "GET /readyz HTTP/1.1" 503 Service Unavailable
INFO:     127.0.0.1:50414 - "GET /readyz?verbose=1 HTTP/1.1" 503 Service Unavailable
INFO:     127.0.0.1:50416 - "GET /readyz/deep HTTP/1.1" 200 OK
10.88.0.1 - - [01/Dec/2026 11:33:06] "GET /healthz HTTP/1.1" 503 -
INFO:     127.0.0.1:50418 - "GET / HTTP/1.1" 200 OK
ERROR:    fatal: cannot reach the cache"""


def test_probe_lines_match_the_path_exactly() -> None:
    assert probe_lines("/readyz", None, "", "/readyz") == ("GET /readyz ", "GET /readyz?")
    shown = last_lines(UVICORN, drop=probe_lines("/readyz", "/healthz"))
    assert shown.splitlines() == [
        "INFO:     Started server process [7]",
        'INFO:     127.0.0.1:50416 - "GET /readyz/deep HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:50418 - "GET / HTTP/1.1" 200 OK',
        "ERROR:    fatal: cannot reach the cache",
    ]


def test_a_root_health_path_drops_only_requests_for_the_root() -> None:
    shown = last_lines(UVICORN, drop=probe_lines("/"))
    assert '"GET / HTTP/1.1"' not in shown and "GET /readyz HTTP/1.1" in shown


def test_the_count_is_of_lines_kept(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("\n".join(["GET /readyz HTTP/1.1"] * 500 + ["a", "b", "c"]) + "\n")
    assert tail(log, lines=2, drop=probe_lines("/readyz")) == "b\nc"
    assert last_lines("x\ny", lines=5) == "x\ny"
    assert tail(tmp_path / "missing.log") == ""

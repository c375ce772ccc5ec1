"""The app's-own-clock check every container backend uses: a real HTTP server's Date header."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_livesandbox.chaos.clock import (
    NEUTRAL_SPEC,
    app_date_offset,
    clock_problem,
    control_fault,
    read_spec,
    write_spec,
)
from pytest_livesandbox.chaos.markers import plan_from_markers
from pytest_livesandbox.errors import ChaosError


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)  # adds Date from this process's real clock
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    server.server_close()


def test_the_date_header_of_a_server_on_our_clock_reads_as_no_offset(server_url: str) -> None:
    seen = app_date_offset(server_url)
    assert seen is not None and abs(seen) < 1.5
    assert clock_problem(seen, 0.0) is None


def test_a_clock_that_did_not_move_fails_the_fault_and_resets_the_file(
    server_url: str, tmp_path: Path
) -> None:
    control = tmp_path / "app.clock"
    write_spec(control)
    (hour,) = plan_from_markers([("clock", (), {"offset": "+1h"})]).faults
    record: dict[str, object] = {}
    with pytest.raises(ChaosError) as caught:
        control_fault(
            hour,
            record,
            write=lambda offset, rate: write_spec(control, offset, rate),
            reset=lambda: write_spec(control),
            check_url=server_url,  # a server without libfaketime: its clock never moves
        )
    assert "the app's Date header says its clock is +0s from ours, not +3600s" in str(caught.value)
    assert "statically linked" in str(caught.value)
    assert record["spec"] == "+3600.000000 x1"
    assert read_spec(control) == NEUTRAL_SPEC

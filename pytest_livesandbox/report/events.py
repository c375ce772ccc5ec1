"""Run events (schema 1): what happened, test by test, sent to every configured sink.

Each event is one JSON object with ``schema``, ``event``, ``time`` (Unix seconds) and
``sandbox_id``. Events in order:

``run_started``    ``run_id``, ``backend``, ``sandbox`` (public info, no secrets), ``workers``
``test_finished``  ``nodeid``, ``outcome`` (passed/failed/skipped/error/xfailed/xpassed),
                   ``duration`` (sum of phases, seconds), ``setup``/``call``/``teardown``
                   (seconds), ``worker`` (xdist id or ``null``), ``started``/``finished``,
                   ``chaos`` (faults applied), ``artifacts`` (paths), ``message`` (short reason),
                   ``location`` (``{"file", "line"}`` of the failing line in the test's own
                   file, else of the test; ``null`` unless it failed or errored);
                   a test whose xdist worker crashed ends with ``outcome`` failed, ``crashed`` true
``run_finished``   ``counts`` per outcome, ``duration``, ``teardown_s``, ``exitstatus``

Fields may be added in later versions of schema 1; none is removed or changes meaning.
Every string of every event passes :func:`~pytest_livesandbox.report.redaction.redact_data`
(the sandbox's passwords and secret-looking values become ``***``) before any sink sees it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from .redaction import redact_data

SCHEMA = 1
Event = dict[str, Any]


class EventSink(Protocol):
    """Receives every event as it happens (JSONL file, webhook, HTML, ...)."""

    def emit(self, event: Event) -> None:
        """Record one event; must not raise for transient trouble."""

    def close(self) -> None:
        """Flush and release resources at the end of the run."""


@dataclass
class _Pending:
    phases: dict[str, float] = field(default_factory=dict)
    outcome: str = "passed"
    started: float = 0.0
    message: str = ""
    location: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _outcome(report: pytest.TestReport, current: str) -> str:
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            return "xfailed" if report.skipped else "xpassed"
        return str(report.outcome)
    if report.failed:
        return "error"
    if report.skipped and report.when == "setup":
        return "skipped"
    return current


class RunEvents:
    """Builds schema-1 events from pytest reports and fans them out to the sinks."""

    def __init__(self, sinks: list[EventSink]) -> None:
        self.sinks = sinks
        self.secrets: list[str] = []
        self.artifact_dirs: set[str] = set()
        self.sandbox_id: str | None = None
        self.counts: Counter[str] = Counter()
        self.started = time.time()
        self._pending: dict[str, _Pending] = {}

    def emit(self, name: str, **fields: Any) -> Event:
        """Send one event to every sink and return it."""
        event: Event = {
            "schema": SCHEMA,
            "event": name,
            "time": round(time.time(), 4),
            "sandbox_id": self.sandbox_id,
            **fields,
        }
        event = redact_data(event, self.secrets)
        for sink in self.sinks:
            sink.emit(event)
        return event

    def on_report(self, report: pytest.TestReport) -> Event | None:
        """Feed one phase report; returns the ``test_finished`` event after teardown."""
        pending = self._pending.setdefault(
            report.nodeid, _Pending(started=report.start or time.time())
        )
        if report.when in ("setup", "call", "teardown"):
            pending.phases[report.when] = round(report.duration, 6)
        new = _outcome(report, pending.outcome)
        if pending.outcome == "passed" or new == "error":
            pending.outcome = new
        if (report.failed or report.skipped) and not pending.message:
            pending.message = _short_reason(report)
        if report.failed and pending.location is None:
            pending.location = failure_location(report)
        for key, value in report.user_properties:
            if key.startswith("livesandbox_"):
                pending.extra[key.removeprefix("livesandbox_")] = value
        # xdist reports a test whose worker died with when="???" and no teardown follows.
        crashed = report.when not in ("setup", "call", "teardown")
        if crashed:
            pending.outcome = "failed"
        elif report.when != "teardown":
            return None
        del self._pending[report.nodeid]
        self.counts[pending.outcome] += 1
        extra = {"crashed": True} if crashed else {}
        artifacts = pending.extra.get("artifacts", [])
        self.artifact_dirs.update(str(Path(a).parent) for a in artifacts)
        return self.emit(
            "test_finished",
            nodeid=report.nodeid,
            outcome=pending.outcome,
            duration=round(sum(pending.phases.values()), 6),
            setup=pending.phases.get("setup", 0.0),
            call=pending.phases.get("call", 0.0),
            teardown=pending.phases.get("teardown", 0.0),
            worker=_worker_id(report),
            started=round(pending.started, 4),
            finished=round(report.stop or time.time(), 4),
            chaos=pending.extra.get("chaos", []),
            artifacts=artifacts,
            message=pending.message,
            location=pending.location,
            **extra,
        )

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


def _worker_id(report: pytest.TestReport) -> str | None:
    # pytest-xdist attaches the sending WorkerController to reports it relays to the controller.
    node = getattr(report, "node", None)
    gateway = getattr(node, "gateway", None)
    return str(gateway.id) if gateway is not None else None


def _short_reason(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])[:500]
    text = getattr(report, "longreprtext", "") or ""
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return ("\n".join(lines[-5:]) or text[-500:])[:1000]


def failure_location(report: pytest.TestReport) -> dict[str, Any]:
    """Where a failed test failed: the deepest traceback line in the test's own file.

    A failure raised inside a library (an ``httpx.ReadTimeout``) is placed on the test's line
    that called it, not in site-packages; without a traceback, on the test's ``def`` line.
    Paths are as pytest prints them (relative to the invocation folder, or absolute).
    """
    test_file, def_line, _ = report.location
    wanted = test_file.replace("\\", "/")
    entries = getattr(getattr(report.longrepr, "reprtraceback", None), "reprentries", None) or []
    for entry in reversed(entries):
        where = getattr(entry, "reprfileloc", None)
        if where is None:
            continue
        path = str(where.path).replace("\\", "/")
        if path == wanted or path.endswith("/" + wanted) or wanted.endswith("/" + path):
            return {"file": path, "line": int(where.lineno)}
    return {"file": test_file, "line": (def_line or 0) + 1}

"""Webhook sink: POST every event as JSON to a URL as it happens, without slowing the run.

    pytest --sandbox=local --sandbox-report-url=https://ci.example.com/hooks/livesandbox

One background thread sends the events in order (so per-worker order holds too) through a bounded
queue. A failed POST (connection error, 5xx, 429) is retried a few times with exponential backoff;
once the receiver has failed several events in a row it counts as *down* and later events get one
try each, so a dead receiver costs the run nothing. At the end the queue is flushed until a
deadline. Nothing here touches the JSONL file: that sink stays complete whatever the receiver does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass

import httpx

from ..redaction import redact
from .events import Event

_STOP = object()


@dataclass(frozen=True)
class WebhookPolicy:
    """Limits of the webhook sender (defaults suit a CI run)."""

    queue_size: int = 10_000
    retries: int = 3
    backoff: float = 0.1
    timeout: float = 5.0
    down_after: int = 3
    flush_deadline: float = 5.0


class WebhookSink:
    """Posts each event to ``url`` from a background thread; see the module docstring."""

    def __init__(self, url: str, policy: WebhookPolicy | None = None) -> None:
        self.url = url
        self.policy = policy or WebhookPolicy()
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._consecutive_failures = 0
        self._queue: queue.Queue[object] = queue.Queue(self.policy.queue_size)
        self._client = httpx.Client(
            timeout=self.policy.timeout,
            headers={"User-Agent": "pytest-livesandbox", "Content-Type": "application/json"},
        )
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="livesandbox-webhook", daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        """Queue one event; never blocks (a full queue drops it and says so at the end)."""
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, dict)
            if self._send(item):
                self.delivered += 1
                self._consecutive_failures = 0
            else:
                self.failed += 1
                self._consecutive_failures += 1

    @property
    def receiver_down(self) -> bool:
        """True after ``down_after`` events in a row could not be delivered."""
        return self._consecutive_failures >= self.policy.down_after

    def _send(self, event: Event) -> bool:
        tries = 1 if self.receiver_down else 1 + self.policy.retries
        body = _encode(event)
        for attempt in range(tries):
            if attempt:
                time.sleep(self.policy.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, content=body)
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                return True
            self.last_error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                return False  # the receiver rejects it; retrying will not help
        return False

    def close(self) -> None:
        """Send what is queued until the flush deadline, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=self.policy.flush_deadline)
        except queue.Full:
            pass
        self._thread.join(self.policy.flush_deadline)
        if not self._thread.is_alive():
            self._client.close()

    @property
    def lost(self) -> int:
        """Events that never reached the receiver (failed, dropped or still queued)."""
        return self.queued + self.dropped - self.delivered

    @property
    def problem(self) -> str | None:
        """One sentence for the user when events were lost, else ``None``."""
        if not self.lost:
            return None
        why = self.last_error or ("queue full" if self.dropped else "flush deadline reached")
        return (
            f"webhook {redact(self.url)}: {self.lost} of {self.queued + self.dropped} events "
            f"not delivered ({redact(why)})"
        )

    def summary(self) -> str:
        """``webhook https://...: 42/42 events delivered``."""
        return (
            f"webhook {redact(self.url)}: {self.delivered}/{self.queued + self.dropped} "
            "events delivered"
        )


def _encode(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":"), default=str).encode()

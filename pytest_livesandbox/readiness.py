"""Readiness waits: small strategies sharing one deadline-and-poll loop.

Each strategy answers one question per poll (``check()``): ``None`` while not ready yet, or raises
to give up early (a crashed process). :func:`wait_until_ready` turns a missed deadline into a
:class:`~pytest_livesandbox.errors.StartupTimeout` with the strategy's own hint::

    wait_until_ready(HttpReady("http://127.0.0.1:8000/healthz"), timeout=30)
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Protocol

import httpx

from .errors import StartupTimeout


class WaitStrategy(Protocol):
    """One readiness question, asked repeatedly until it says yes."""

    what: str

    def check(self) -> bool:
        """True when ready; False to poll again; raise to stop waiting."""

    def hint(self) -> str:
        """What to look at when the deadline passes (last log lines, last error)."""


def wait_until_ready(
    strategy: WaitStrategy,
    *,
    timeout: float,
    interval: float = 0.01,
    max_interval: float = 0.1,
) -> float:
    """Poll ``strategy`` until ready; return the seconds it took.

    The interval starts small (fast local starts) and backs off to ``max_interval``.
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        if strategy.check():
            return time.monotonic() - began
        if time.monotonic() >= deadline:
            raise StartupTimeout(
                f"{strategy.what} was not ready after {timeout:g}s.\n{strategy.hint()}"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


class HttpReady:
    """Ready when ``GET url`` answers below 400; ``alive`` may abort the wait (crashed app)."""

    def __init__(
        self,
        url: str,
        *,
        what: str = "the app",
        alive: Callable[[], None] | None = None,
        log_tail: Callable[[], str] | None = None,
    ) -> None:
        self.url = url
        self.what = f"{what} ({url})"
        self._alive = alive
        self._log_tail = log_tail
        self._last = "no answer yet"
        # No proxy variables (trust_env=False), but the CA bundle a CI sets (SSL_CERT_FILE /
        # SSL_CERT_DIR) is honoured like the tests' own httpx clients honour it.
        self._client = httpx.Client(
            timeout=httpx.Timeout(2.0, connect=0.5),
            trust_env=False,
            verify=httpx.create_ssl_context(trust_env=True),
        )

    def check(self) -> bool:
        """One probe; closes the client once ready."""
        if self._alive is not None:
            self._alive()
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as exc:
            self._last = f"{type(exc).__name__}: {exc}"
            return False
        if response.status_code < 400:
            self._client.close()
            return True
        self._last = f"HTTP {response.status_code}: {response.text[:200]}"
        return False

    def last_probe(self) -> str:
        """``Last probe: <DNS, TLS or HTTP reason>``."""
        return f"Last probe: {self._last}"

    def hint(self) -> str:
        """The last probe result and the app's last output."""
        self._client.close()
        tail = self._log_tail() if self._log_tail else ""
        text = f"Last probe: {self._last}."
        if tail:
            text += f"\nLast output:\n{tail}"
        return (
            text + "\nHint: check the health path (--sandbox-health-path) and that the app "
            "listens on $PORT; raise --sandbox-startup-timeout if it is only slow."
        )


def answers(url: str, timeout: float = 1.0) -> bool:
    """One plain GET of ``url``: True on a 2xx/3xx answer (a reused sandbox's health probe).

    No HTTP client: setting one up (TLS context) costs more than a whole warm reset.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 400
    except (OSError, ValueError):
        return False

"""Chaos tests run alone: a fair reader/writer lock across all processes of a run.

Faults act on the one shared sandbox, so while a chaos test runs no other test may (its results
would be noise); ordinary tests still run side by side. Every test holds the lock in *shared*
mode, a chaos test in *exclusive* mode. ``flock`` locks die with their process, so a crashed
worker never blocks the run. A turnstile keeps a waiting chaos test from being starved by a
stream of ordinary tests::

    with SandboxLock(workdir).hold(exclusive=True):
        ...
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SandboxLock:
    """Shared for ordinary tests, exclusive for chaos tests."""

    def __init__(self, workdir: Path | str) -> None:
        self.main = Path(workdir) / "chaos.lock"
        self.turnstile = Path(workdir) / "chaos.turnstile"

    @contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        turn = os.open(self.turnstile, os.O_RDWR | os.O_CREAT, 0o644)
        main = os.open(self.main, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
            if exclusive:
                # Keep the turnstile while waiting: new readers queue behind us.
                fcntl.flock(main, fcntl.LOCK_EX)
                fcntl.flock(turn, fcntl.LOCK_UN)
            else:
                fcntl.flock(turn, fcntl.LOCK_UN)
                fcntl.flock(main, fcntl.LOCK_SH)
            yield
        finally:
            os.close(main)
            os.close(turn)

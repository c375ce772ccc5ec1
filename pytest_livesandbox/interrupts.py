"""Teardown runs to the end: Ctrl-C and SIGTERM while it runs are noted, never raised.

An interrupt in the middle of stopping PostgreSQL used to abandon it (the ``KeyboardInterrupt``
left from a ``time.sleep`` in the stop loop). Inside :func:`shielded`, SIGINT and SIGTERM only
print one line; from the second one on, :func:`hurried` is true and the stop loops skip their
polite waits and kill at once, so a second signal speeds teardown up but never cuts it short::

    with shielded("tearing down sandbox 3f9c2a1b"):
        backend.teardown(info)
    if hurried(): ...   # inside stop loops: SIGKILL now instead of waiting

Only the main thread can install signal handlers; elsewhere the block runs unshielded.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = 0
_depth = 0


def hurried() -> bool:
    """True once a second interrupt arrived during a shielded teardown."""
    return _received >= 2


def interrupted() -> bool:
    """True if any interrupt arrived during the current (or last) shielded block."""
    return _received >= 1


def _note(signum: int, frame: FrameType | None) -> None:
    global _received
    _received += 1
    how = "killing what is left now" if hurried() else "a second Ctrl-C kills what is left now"
    sys.stderr.write(
        f"\nlivesandbox: {signal.Signals(signum).name} during teardown; finishing it ({how})\n"
    )
    sys.stderr.flush()


@contextmanager
def shielded(what: str = "teardown") -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM noted instead of raised (nestable)."""
    global _depth, _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _received = 0
        previous = {sig: signal.signal(sig, _note) for sig in _SIGNALS}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

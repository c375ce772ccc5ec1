"""The last lines of a log, for error messages and failure artifacts.

Start-up errors show the app's own last words, not the access-log lines of our readiness probe
(or the kubelet's), which a real app (uvicorn, gunicorn) writes once per probe::

    tail(workdir / "app.log", drop=probe_lines("/readyz"))
    last_lines(container_logs, drop=probe_lines("/readyz", "/healthz"))
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def probe_lines(*paths: str | None) -> tuple[str, ...]:
    """What an access-log line of a ``GET`` on one of ``paths`` contains.

    >>> probe_lines("/readyz", None)
    ('GET /readyz ', 'GET /readyz?')
    """
    return tuple(f"GET {p}{end}" for p in dict.fromkeys(paths) if p for end in (" ", "?"))


def last_lines(text: str, lines: int = 20, drop: Iterable[str] = ()) -> str:
    r"""The last ``lines`` lines of ``text``, leaving out those containing any of ``drop``.

    >>> last_lines("ok\n1.2.3.4 GET /readyz HTTP/1.1 503\nbye", drop=probe_lines("/readyz"))
    'ok\nbye'
    """
    marks = [mark for mark in drop if mark]
    kept = [line for line in text.splitlines() if not any(mark in line for mark in marks)]
    return "\n".join(kept[-lines:])


def tail(path: Path, lines: int = 20, max_bytes: int = 65536, drop: Iterable[str] = ()) -> str:
    """The last ``lines`` lines of ``path`` (reads at most ``max_bytes``); ``""`` if missing.

    Lines containing any of ``drop`` are left out (see :func:`probe_lines`).

    >>> tail(Path("/nonexistent"))
    ''
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    return last_lines(data.decode("utf-8", errors="replace"), lines, drop)

"""The last lines of a log file, for error messages and failure artifacts."""

from __future__ import annotations

import os
from pathlib import Path


def tail(path: Path, lines: int = 20, max_bytes: int = 16384, drop: str = "") -> str:
    """The last ``lines`` lines of ``path`` (reads at most ``max_bytes``); ``""`` if missing.

    Lines containing ``drop`` are left out (the access-log lines of our own readiness probe,
    ``drop="GET /healthz "``), so the app's own last words are what is shown.

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
    text = data.decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if not (drop and drop in line)]
    return "\n".join(kept[-lines:])

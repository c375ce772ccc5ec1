"""The last lines of a log file, for error messages and failure artifacts."""

from __future__ import annotations

import os
from pathlib import Path


def tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of ``path`` (reads at most ``max_bytes``); ``""`` if missing.

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
    return "\n".join(text.splitlines()[-lines:])

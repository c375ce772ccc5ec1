"""JSONL sink: one event per line, flushed as it happens, so a watcher sees tests arrive live.

tail -f report.jsonl | jq -c 'select(.event == "test_finished") | [.outcome, .nodeid]'
"""

from __future__ import annotations

import json
from pathlib import Path

from .events import Event


class JsonlSink:
    """Appends events to ``path`` (created with its folder; truncated at the start of a run)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "w", encoding="utf-8")

    def emit(self, event: Event) -> None:
        """Write one line and flush it."""
        if self._file.closed:
            return
        self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

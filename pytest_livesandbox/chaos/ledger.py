"""Which faults are in force right now, on disk, so any process can undo them.

Each applied fault writes one JSON file under ``<workdir>/chaos-active/`` holding its owner
(pid plus kernel start time) and the data needed to undo it; removing the fault deletes the file.
A file whose owner is gone (a crashed xdist worker, ``kill -9``) is *stale*: the next test, or the
run's teardown, undoes it. Checking costs one ``listdir``::

    ledger = Ledger(workdir)
    key = ledger.add("toxic", {"route": "db", "id": "t3"})
    ...
    ledger.remove(key)
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from ..processes import process_alive, start_time

LEDGER_DIR = "chaos-active"
_counter = itertools.count(1)


class Ledger:
    """The active-fault records of one sandbox."""

    def __init__(self, workdir: Path | str) -> None:
        self.root = Path(workdir) / LEDGER_DIR

    def add(self, kind: str, undo: dict[str, Any], owner: str = "") -> str:
        """Record a fault owned by this process; returns its key."""
        self.root.mkdir(exist_ok=True)
        pid = os.getpid()
        key = f"{pid}-{next(_counter)}-{kind}"
        entry = {
            "kind": kind,
            "undo": undo,
            "owner": owner,
            "owner_pid": pid,
            "owner_started": start_time(pid),
        }
        tmp = self.root / (key + ".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(self.root / (key + ".json"))
        return key

    def update(self, key: str, undo: dict[str, Any]) -> None:
        """Replace a record's undo data (e.g. a pid learnt later)."""
        path = self.root / (key + ".json")
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        entry["undo"] = undo
        tmp = self.root / (key + ".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)

    def remove(self, key: str) -> None:
        """Forget a fault (it has been undone)."""
        (self.root / (key + ".json")).unlink(missing_ok=True)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every record, by key."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                found[name[:-5]] = json.loads((self.root / name).read_text())
            except (OSError, ValueError):
                continue
        return found

    def stale(self) -> dict[str, dict[str, Any]]:
        """Records whose owning process is gone."""
        return {
            key: entry
            for key, entry in self.entries().items()
            if not process_alive(int(entry["owner_pid"]), entry.get("owner_started"))
        }

    def empty(self) -> bool:
        """True when no fault is recorded (the cheap per-test check)."""
        try:
            return not any(n.endswith(".json") for n in os.listdir(self.root))
        except FileNotFoundError:
            return True

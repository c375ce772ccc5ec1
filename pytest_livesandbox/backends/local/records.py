"""Local sandboxes as ``livesandbox ls/gc/down`` see them: one ``state.json`` per folder.

Only folders whose state file carries our ownership mark (``managed_by: pytest-livesandbox``) and
whose name is their id count::

    for rec in local_records():
        print(rec.id, rec.status)            # running / kept / expired / orphaned
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...info import MANAGED_BY, SandboxInfo
from ...locations import state_root
from ...processes import process_alive
from ...protocol import SandboxRecord

STATE_FILE = "state.json"


@dataclass
class LocalRecord:
    """One local sandbox as its state file describes it."""

    path: Path
    state: dict[str, Any]

    @property
    def id(self) -> str:
        """The sandbox id."""
        return str(self.state["id"])

    @property
    def age(self) -> float:
        """Seconds since creation."""
        return time.time() - float(self.state.get("created_at", 0))

    @property
    def orphaned(self) -> bool:
        """True when the pytest process that made it is gone."""
        return not process_alive(
            int(self.state.get("pytest_pid", 0)), self.state.get("pytest_started")
        )

    @property
    def expires_in(self) -> float | None:
        """Seconds until ``expires_at`` (negative once expired); ``None`` if it has none."""
        expires_at = self.state.get("expires_at")
        return None if expires_at is None else float(expires_at) - time.time()

    @property
    def status(self) -> str:
        """``running``, ``kept``, ``expired`` or ``orphaned``."""
        if not self.orphaned:
            return "running"
        if self.state.get("keep"):
            expired = self.expires_in is not None and self.expires_in <= 0
            return "expired" if expired else "kept"
        return "orphaned"

    def info(self) -> SandboxInfo:
        """The state as :class:`SandboxInfo` (for teardown)."""
        known = SandboxInfo.__dataclass_fields__
        return SandboxInfo.from_json({k: v for k, v in self.state.items() if k in known})

    def record(self) -> SandboxRecord:
        """The CLI's view of it."""
        status = self.status
        return SandboxRecord(
            id=self.id,
            backend=str(self.state.get("backend", "local")),
            status=status,
            age=self.age,
            owner=str(self.state.get("owner", "?")),
            where=str(self.state.get("endpoint") or "-"),
            expires_in=self.expires_in,
            reapable=status in ("orphaned", "expired"),
            protected=status == "running",
            handle=self,
        )


def local_records() -> list[LocalRecord]:
    """Every local sandbox folder with our ownership mark."""
    records = []
    for state_path in sorted(state_root().glob(f"*/{STATE_FILE}")):
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("managed_by") == MANAGED_BY and state.get("id") == state_path.parent.name:
            records.append(LocalRecord(state_path.parent, state))
    return records


def unowned_folder_hint(sandbox_id: str) -> str | None:
    """Why ``livesandbox down ID`` refuses a folder that looks like a sandbox but is not ours."""
    if (state_root() / sandbox_id / STATE_FILE).is_file():
        return (
            f"{state_root() / sandbox_id} has no ownership mark (managed_by: {MANAGED_BY}) in its "
            "state file: not ours"
        )
    return None

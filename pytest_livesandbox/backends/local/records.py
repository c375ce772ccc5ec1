"""Local sandboxes as ``livesandbox ls/gc/down`` see them: one ``state.json`` per folder.

Only folders whose state file carries our ownership mark (``managed_by: pytest-livesandbox``) and
whose name is their id count::

    for rec in local_records():
        print(rec.id, rec.status)            # running / kept / expired / orphaned / warm / lapsed

The lease lives next to the folder (``<id>.lease.json``, :mod:`...lease`). On this machine the
holder's pid is the stronger signal (a live pytest is never reaped, a dead one's sandbox is
orphaned at once); the lease is what keeps a warm sandbox (``--sandbox-reuse``) and ends it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import SandboxConfig
from ...info import MANAGED_BY, SandboxInfo
from ...lease import Lease, LeaseFile, lease_path
from ...locations import state_root
from ...processes import process_alive, start_time
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
    def lease_file(self) -> LeaseFile:
        """Where its lease lives."""
        return LeaseFile(lease_path(self.path.parent, self.id))

    @property
    def lease(self) -> Lease | None:
        """Its current lease (``None`` for a sandbox made before leases existed)."""
        return self.lease_file.read()

    @property
    def status(self) -> str:
        """``running``, ``warm``, ``lapsed``, ``kept``, ``expired`` or ``orphaned``."""
        lease = self.lease
        if lease is not None and lease.state == "warm":
            if lease.lapsed:
                return "lapsed"
            return "expired" if (self.expires_in or 0) < 0 else "warm"
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
        lease = self.lease
        return SandboxRecord(
            id=self.id,
            backend=str(self.state.get("backend", "local")),
            status=status,
            age=self.age,
            owner=str(self.state.get("owner", "?")),
            where=str(self.state.get("endpoint") or "-"),
            expires_in=self.expires_in,
            reapable=status in ("orphaned", "expired", "lapsed"),
            protected=status == "running",
            lease_expires_in=None if lease is None else lease.expires_in,
            reuse_key=lease.key if lease is not None else "",
            handle=self,
        )

    def update(self, **changes: Any) -> None:
        """Rewrite the state file with ``changes`` (atomically)."""
        self.state.update(changes)
        tmp = self.path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.path / STATE_FILE)


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


def write_state(workdir: Path, info: SandboxInfo, config: SandboxConfig) -> None:
    """Write ``state.json`` of the sandbox in ``workdir`` (atomically; no passwords)."""
    state = {
        "managed_by": MANAGED_BY,
        **info.public(),
        "pytest_pid": os.getpid(),
        "pytest_started": start_time(os.getpid()),
        "keep": config.keep,
        # `livesandbox gc` reaps it after this even when kept (--sandbox-ttl).
        "expires_at": round(info.created_at + config.ttl, 3),
    }
    tmp = workdir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(workdir / STATE_FILE)

"""The xdist handoff: the controller's sandbox reaches workers that are already running.

Under ``pytest -n N`` the controller provisions only after the first worker collected without
errors (so a typo in a marker never costs a sandbox), but the workers started before that, so
``workerinput`` can carry only where to look: a file in the state folder and a random key. The
controller writes the sandbox (or its provisioning error) there before xdist schedules the first
test; the workers read it on first use. The content holds the database passwords, so the file
is mode 0600 in the private state folder, like a reused sandbox's ``secrets.json``, and removed
at teardown; the key (which travels only through xdist's pipes) signs it, so a worker never
takes a stale or foreign file for its run's sandbox::

    handoff = Handoff.create(state_root(), run_id)  # controller
    workerinput["livesandbox"] = handoff.address()
    handoff.write({"info": ..., "error": None})
    Handoff.from_address(address).read()        # worker: None until written
    handoff.remove()                            # controller, at teardown

The signature is an HMAC-SHA256 of the JSON body, on the file's first line.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import SandboxError
from .processes import process_alive


class Handoff:
    """One run's handoff file and its key."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key

    @classmethod
    def create(cls, folder: Path, run_id: str) -> Handoff:
        """A new handoff for ``run_id`` in ``folder`` (nothing written yet).

        The name carries this process's pid: files of controllers that are gone (``kill -9``)
        are removed here, so they do not pile up.
        """
        for stale in folder.glob(".handoff-*"):
            pid = stale.name.split(".")[1].split("-")[-1]
            if pid.isdigit() and not process_alive(int(pid)):
                stale.unlink(missing_ok=True)
        return cls(folder / f".handoff-{run_id}-{os.getpid()}", secrets.token_bytes(32))

    def address(self) -> dict[str, str]:
        """What a worker needs to read it (JSON-ready)."""
        return {"path": str(self.path), "key": self._key.hex()}

    @classmethod
    def from_address(cls, address: dict[str, str]) -> Handoff:
        """The inverse of :meth:`address`."""
        return cls(Path(address["path"]), bytes.fromhex(address["key"]))

    def write(self, payload: dict[str, Any]) -> None:
        """Write ``payload`` with its signature (atomically, mode 0600)."""
        body = json.dumps(payload).encode()
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._tag(body) + b"\n" + body)
        os.replace(partial, self.path)

    def read(self) -> dict[str, Any] | None:
        """The payload, or None while the controller has not written it."""
        try:
            tag, _, body = self.path.read_bytes().partition(b"\n")
        except FileNotFoundError:
            return None
        if not hmac.compare_digest(tag, self._tag(body)):
            raise SandboxError(f"the xdist handoff {self.path} is not this run's (or corrupt)")
        data: dict[str, Any] = json.loads(body)
        return data

    def remove(self) -> None:
        """Delete the file (idempotent)."""
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".partial").unlink(missing_ok=True)

    def _tag(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, "sha256").hex().encode()

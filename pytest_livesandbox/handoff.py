"""The xdist handoff: the controller's sandbox reaches workers that are already running.

Under ``pytest -n N`` the controller provisions only after the first worker collected without
errors (so a typo in a marker never costs a sandbox), but the workers started before that, so
``workerinput`` can carry only where to look: a file in the state folder and a random key. The
controller writes the sandbox (or its provisioning error) there before xdist schedules the first
test; the workers read it on first use. The content holds the database passwords, so it is
sealed with the key, which lives only in the run's processes (``workerinput`` travels through
xdist's pipes): a file left behind by ``kill -9`` tells nobody anything::

    handoff = Handoff.create(state_root(), run_id)  # controller
    workerinput["livesandbox"] = handoff.address()
    handoff.write({"info": ..., "error": None})
    Handoff.from_address(address).read()        # worker: None until written
    handoff.remove()                            # controller, at teardown

The seal is HMAC-SHA256 in counter mode with encrypt-then-MAC (standard library only).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import SandboxError

_NONCE = 16
_TAG = 32


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
            if pid.isdigit() and not _alive(int(pid)):
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
        """Seal ``payload`` into the file (atomically, mode 0600)."""
        nonce = secrets.token_bytes(_NONCE)
        body = _xor(json.dumps(payload).encode(), self._stream(nonce))
        sealed = nonce + body + self._tag(nonce + body)
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
        os.replace(partial, self.path)

    def read(self) -> dict[str, Any] | None:
        """The payload, or None while the controller has not written it."""
        try:
            sealed = self.path.read_bytes()
        except FileNotFoundError:
            return None
        nonce, body, tag = sealed[:_NONCE], sealed[_NONCE:-_TAG], sealed[-_TAG:]
        whole = len(sealed) >= _NONCE + _TAG
        if not whole or not hmac.compare_digest(tag, self._tag(nonce + body)):
            raise SandboxError(f"the xdist handoff {self.path} is not this run's (or corrupt)")
        data: dict[str, Any] = json.loads(_xor(body, self._stream(nonce)))
        return data

    def remove(self) -> None:
        """Delete the file (idempotent)."""
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".partial").unlink(missing_ok=True)

    def _tag(self, data: bytes) -> bytes:
        return hmac.digest(self._subkey(b"mac"), data, "sha256")

    def _stream(self, nonce: bytes) -> Iterator[int]:
        key = self._subkey(b"enc")
        counter = 0
        while True:
            yield from hmac.digest(key, nonce + counter.to_bytes(8, "big"), "sha256")
            counter += 1

    def _subkey(self, label: bytes) -> bytes:
        return hmac.digest(self._key, label, "sha256")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _xor(data: bytes, stream: Iterator[int]) -> bytes:
    return bytes(byte ^ next(stream) for byte in data)

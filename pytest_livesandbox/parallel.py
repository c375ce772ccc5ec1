"""Exactly one sandbox per pytest run, also under pytest-xdist.

Roles:

- *single* (no xdist): provisions lazily when a test first asks for it; tears down at session end.
- *controller* (``-n N``): provisions once, before workers start, and hands the
  :class:`~pytest_livesandbox.sandbox.SandboxInfo` to every worker through ``workerinput``;
  tears down after the last worker is gone, so a crashed worker cannot leak or kill it.
- *worker*: adopts the controller's sandbox and never tears it down.

A provisioning failure is remembered and re-raised for every test that needs the sandbox (one
clear message, no retry storm).

There is deliberately no filelock/state-file handover between independent pytest processes:
under xdist there is always a controller (``-n 0`` and ``--dist=no`` are single processes), and a
"first one provisions, last one tears down" refcount across processes would have to survive
``kill -9`` and would blur the rule that two runs never share a sandbox. Sharing on purpose is
explicit instead: ``--sandbox-keep`` once, ``--sandbox-attach=ID`` elsewhere (attach never
deletes), ``livesandbox down ID`` at the end. The one thing workers do share at run time, the
isolation template database, is created under a file lock (:mod:`.postgres.isolation`).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

import pytest

from .config import SandboxConfig
from .errors import SandboxError
from .info import SandboxInfo, new_sandbox_id
from .sandbox import Sandbox

WORKERINPUT_KEY = "livesandbox"
Role = Literal["single", "controller", "worker"]


class SandboxManager:
    """Owns this process's view of the run's sandbox."""

    def __init__(self, config: SandboxConfig, workerinput: dict[str, Any] | None = None) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._error: str | None = None
        self.role: Role = "single"
        self.run_id = new_sandbox_id()
        self.sandbox: Sandbox | None = None
        self.last_info: SandboxInfo | None = None
        if workerinput is not None and WORKERINPUT_KEY in workerinput:
            self.role = "worker"
            payload = json.loads(workerinput[WORKERINPUT_KEY])
            self.run_id = payload["run_id"]
            self._error = payload.get("error")
            if payload.get("info"):
                info = SandboxInfo.from_json(payload["info"])
                self.sandbox = Sandbox(config, info=info, owned=False, run_id=self.run_id)

    @property
    def provisioned(self) -> bool:
        """True once this process holds a started sandbox."""
        return self.sandbox is not None and self.sandbox.started

    def get(self) -> Sandbox:
        """The run's sandbox, provisioned on first use; raises the remembered error if it failed."""
        with self._lock:
            if self._error is not None:
                raise SandboxError(self._error)
            if self.sandbox is None:
                sandbox = Sandbox(self.config, run_id=self.run_id)
                try:
                    sandbox.start()
                except SandboxError as exc:
                    self._error = f"{type(exc).__name__}: {exc}"
                    raise
                self.sandbox = sandbox
                self.last_info = sandbox.info
            return self.sandbox

    def workerinput_payload(self) -> str:
        """What the controller hands each worker (provisions first, once)."""
        self.role = "controller"
        try:
            info = self.get().info.to_json(secrets=True)
        except SandboxError:
            info = None
        return json.dumps({"run_id": self.run_id, "info": info, "error": self._error})

    @property
    def error(self) -> str | None:
        """The provisioning error, if provisioning failed."""
        return self._error

    def shutdown(self) -> None:
        """Tear down the sandbox if this process owns it (idempotent)."""
        with self._lock:
            sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None and self.role != "worker":
            sandbox.stop()


def is_xdist_worker(config: pytest.Config) -> bool:
    """True in an xdist worker process (the one place that asks)."""
    return hasattr(config, "workerinput")

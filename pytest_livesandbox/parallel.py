"""Exactly one sandbox per pytest run, also under pytest-xdist.

Roles:

- *single* (no xdist): provisions lazily when a test first asks for it; tears down at session end.
- *controller* (``-n N``): provisions once, when the first worker finished collecting without
  errors (a bad marker is a collection error that costs no sandbox), before xdist schedules any
  test; hands the :class:`~pytest_livesandbox.sandbox.SandboxInfo` to the workers, which are
  running by then, through a sealed file whose address travels in ``workerinput``
  (:mod:`.handoff`); tears down after the last worker is gone, so a crashed worker cannot leak
  or kill it.
- *worker*: adopts the controller's sandbox on first use and never tears it down.

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
from .handoff import Handoff
from .info import SandboxInfo, new_sandbox_id
from .locations import state_root
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
        self._sandbox: Sandbox | None = None
        self._handoff: Handoff | None = None
        self.last_info: SandboxInfo | None = None
        #: Why no sandbox was made for a run that may have needed one (terminal summary).
        self.not_made: str | None = None
        if workerinput is not None and WORKERINPUT_KEY in workerinput:
            self.role = "worker"
            payload = json.loads(workerinput[WORKERINPUT_KEY])
            self.run_id = payload["run_id"]
            self._handoff = Handoff.from_address(payload["handoff"])

    @property
    def sandbox(self) -> Sandbox | None:
        """The started sandbox, if any (a worker adopts the controller's once it is handed over)."""
        self._adopt()
        return self._sandbox

    @property
    def provisioned(self) -> bool:
        """True once this process holds a started sandbox."""
        sandbox = self.sandbox
        return sandbox is not None and sandbox.started

    def get(self) -> Sandbox:
        """The run's sandbox, provisioned on first use; raises the remembered error if it failed."""
        with self._lock:
            self._adopt()
            if self._error is not None:
                raise SandboxError(self._error)
            if self._sandbox is None and self.role == "worker":
                raise SandboxError(
                    "the xdist controller has not handed over the sandbox (no "
                    f"{self._handoff.path if self._handoff else 'handoff'}): it provisions "
                    "once a worker collected without errors, before any test is scheduled"
                )
            if self._sandbox is None:
                sandbox = Sandbox(self.config, run_id=self.run_id)
                try:
                    sandbox.start()
                except SandboxError as exc:
                    self._error = f"{type(exc).__name__}: {exc}"
                    raise
                self._sandbox = sandbox
                self.last_info = sandbox.info
            return self._sandbox

    def workerinput_payload(self) -> str:
        """What the controller hands each worker at its start: where the sandbox will be."""
        self.role = "controller"
        if self._handoff is None:
            self._handoff = Handoff.create(state_root(), self.run_id)
        return json.dumps({"run_id": self.run_id, "handoff": self._handoff.address()})

    def hand_over(self) -> None:
        """Controller: provision (once) and write the sandbox or the error for the workers."""
        try:
            self.get()
        except SandboxError:
            pass
        finally:
            if self._handoff is not None:
                sandbox = self._sandbox
                info = sandbox.info.to_json(secrets=True) if sandbox is not None else None
                error = self._error
                if info is None and error is None:
                    error = "SandboxError: provisioning was interrupted (see the run's output)"
                self._handoff.write({"info": info, "error": error})

    @property
    def error(self) -> str | None:
        """The provisioning error, if provisioning failed."""
        self._adopt()
        return self._error

    def shutdown(self) -> None:
        """Tear down the sandbox if this process owns it (idempotent)."""
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if self.role == "controller" and self._handoff is not None:
            self._handoff.remove()
        if sandbox is not None and self.role != "worker":
            sandbox.stop()

    def _adopt(self) -> None:
        # A worker takes the controller's sandbox (or its error) once the handoff is written.
        if self.role != "worker" or self._handoff is None:
            return
        payload = self._handoff.read()
        if payload is None:
            return
        self._handoff = None  # read once
        self._error = payload.get("error")
        if payload.get("info"):
            info = SandboxInfo.from_json(payload["info"])
            self._sandbox = Sandbox(self.config, info=info, owned=False, run_id=self.run_id)
            self.last_info = info


def is_xdist_worker(config: pytest.Config) -> bool:
    """True in an xdist worker process (the one place that asks)."""
    return hasattr(config, "workerinput")

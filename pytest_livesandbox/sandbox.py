"""The sandbox lifecycle shared by every backend: provision once, tear down once.

``Sandbox`` asks the registered backend (``config.backend``) to provision; ``owned=False`` (xdist
workers, attach mode) leaves the sandbox running at :meth:`Sandbox.stop`::

    with Sandbox(config) as sandbox:          # provisions; tears down on exit, also on Ctrl-C
        print(sandbox.info.endpoint, sandbox.info.db.redacted_dsn)

While an owned sandbox runs, a :class:`~.lease.LeaseKeeper` renews its lease every few seconds.
With ``config.reuse`` a warm sandbox of the same reuse key is claimed and reset instead of
provisioning, and :meth:`Sandbox.stop` hands the sandbox back warm (:mod:`.reuse`).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from . import reuse
from .backends import load_backend
from .errors import SandboxError
from .info import SandboxInfo, new_sandbox_id
from .interrupts import shielded
from .lease import LeaseKeeper, sweep_lapsed
from .protocol import ListScope

if TYPE_CHECKING:
    from .config import SandboxConfig
    from .protocol import Backend


SWEEP_JOIN_TIMEOUT = 10.0  # a lapsed sandbox's reaping may finish before the run exits


def backend_for(config: SandboxConfig) -> Backend:
    """The backend named by ``config.backend`` (a fresh instance, imported on first use)."""
    return load_backend(config.backend)


class Sandbox:
    """One sandbox and its lifecycle; the session fixture ``livesandbox`` yields it.

    ``owned=False`` (xdist workers, attach mode) means :meth:`stop` leaves it running.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        info: SandboxInfo | None = None,
        owned: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.owned = owned
        self.run_id = run_id or new_sandbox_id()
        self._info = info
        self._backend: Backend | None = None
        self._keeper: LeaseKeeper | None = None
        self._sweeper: threading.Thread | None = None

    @property
    def info(self) -> SandboxInfo:
        """The running sandbox's description."""
        if self._info is None:
            raise SandboxError("the sandbox is not started")
        return self._info

    @property
    def started(self) -> bool:
        """True once provisioned (or attached)."""
        return self._info is not None

    def start(self) -> SandboxInfo:
        """Provision the sandbox (once); the backend cleans up itself if this fails."""
        if self._info is None:
            began = time.perf_counter()
            backend = self._backend = load_backend(self.config.backend)
            key = reuse.reuse_key(self.config, backend) if self.config.reuse else None
            failed: list[str] = []
            info = reuse.claim(backend, self.config, key, self.run_id, failed) if key else None
            if info is None:
                info = backend.provision(self.config, new_sandbox_id(), self.run_id)
                if failed:
                    info.extra["reuse_failed"] = failed[0]
                if key:
                    try:
                        reuse.prepare(info, key)
                    except BaseException:
                        backend.teardown(info)
                        raise
            info.timings["ready_s"] = round(time.perf_counter() - began, 4)
            self._info = info
            if self.owned:
                self._keeper = LeaseKeeper(
                    lambda until: backend.renew_lease(info, until), self.config.lease
                )
                self._keeper.start()
                scope = ListScope(kubeconfig=self.config.kubeconfig, context=self.config.context)
                self._sweeper = sweep_lapsed(backend, scope)
        return self._info

    def stop(self) -> None:
        """Tear the sandbox down unless it is not ours or ``keep`` is set."""
        info, self._info = self._info, None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.stop()
        if self._sweeper is not None:
            self._sweeper.join(timeout=SWEEP_JOIN_TIMEOUT)
            self._sweeper = None
        if info is None or not self.owned:
            return
        backend = self._backend or load_backend(self.config.backend)
        # Ctrl-C or SIGTERM now would leave PostgreSQL running: teardown finishes first.
        with shielded(f"tearing down sandbox {info.id}"):
            if self.config.reuse and info.extra.get("reuse_key"):
                backend.keep_warm(info, time.time() + self.config.reuse_idle)
            elif self.config.keep:
                backend.keep_warm(info, info.created_at + self.config.ttl)
            else:
                backend.teardown(info)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""The sandbox lifecycle shared by every backend: provision once, tear down once.

``Sandbox`` asks the registered backend (``config.backend``) to provision; ``owned=False`` (xdist
workers, attach mode) leaves the sandbox running at :meth:`Sandbox.stop`::

    with Sandbox(config) as sandbox:          # provisions; tears down on exit, also on Ctrl-C
        print(sandbox.info.endpoint, sandbox.info.db.redacted_dsn)
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING

from .backends import load_backend
from .errors import SandboxError
from .info import SandboxInfo, new_sandbox_id

if TYPE_CHECKING:
    from .config import SandboxConfig
    from .protocol import Backend


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
            self._backend = load_backend(self.config.backend)
            info = self._backend.provision(self.config, new_sandbox_id(), self.run_id)
            info.timings["ready_s"] = round(time.perf_counter() - began, 4)
            self._info = info
        return self._info

    def stop(self) -> None:
        """Tear the sandbox down unless it is not ours or ``keep`` is set."""
        info, self._info = self._info, None
        if info is None or not self.owned or self.config.keep:
            return
        backend = self._backend or load_backend(self.config.backend)
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

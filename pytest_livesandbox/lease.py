"""Leases: every sandbox is held by a running pytest that renews it every few seconds.

A sandbox whose lease lapsed (its pytest was killed, its machine vanished) is reaped by the next
``livesandbox gc`` or plugin run without waiting for its TTL. A warm sandboxes' lease
(``--sandbox-reuse``) is the time it may wait, unclaimed, for the next run.

The backend stores the lease where it can (local/docker: ``<id>.lease.json`` in the state
folder, kube: namespace annotations); :class:`LeaseKeeper` renews it from a daemon thread::

    keeper = LeaseKeeper(lambda until: backend.renew_lease(info, until), duration=30)
    keeper.start()          # renews every duration/4 s until stop()
    ...
    keeper.stop()

:class:`LeaseFile` is the file form, with a compare-and-set under ``flock`` (released by the
kernel when the holder dies, so a ``kill -9`` never leaves it locked)::

    lease = LeaseFile(state_root() / "3f9c2a1b.lease.json")
    won = lease.compare_and_set(lambda old: old is None or old.lapsed, Lease("held", "run-2", t))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .protocol import Backend, ListScope, SandboxRecord

LeaseState = Literal["held", "warm", "kept"]
LEASE_SUFFIX = ".lease.json"
MIN_INTERVAL = 0.5


@dataclass(frozen=True)
class Lease:
    """Who holds a sandbox and until when (Unix time).

    ``state`` is ``held`` (a pytest uses it), ``warm`` (kept for reuse, claimable by a run
    with the same ``key``) or ``kept`` (``--sandbox-keep``: until its TTL).

    >>> Lease("held", "run-1", expires_at=0.0).lapsed
    True
    """

    state: LeaseState
    holder: str
    expires_at: float
    key: str = ""
    pid: int = 0

    @property
    def lapsed(self) -> bool:
        """True once ``expires_at`` has passed."""
        return self.expires_at < time.time()

    @property
    def expires_in(self) -> float:
        """Seconds until it lapses (negative once lapsed)."""
        return self.expires_at - time.time()

    def renewed(self, until: float) -> Lease:
        """The same lease, valid until ``until``."""
        return replace(self, expires_at=round(until, 3))


class LeaseFile:
    """A lease kept in a JSON file (written atomically, changed under an exclusive ``flock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Lease | None:
        """The current lease, or ``None`` when there is none (or it cannot be read)."""
        try:
            data = json.loads(self.path.read_text())
            return Lease(**data)
        except (OSError, ValueError, TypeError):
            return None

    def write(self, lease: Lease) -> None:
        """Replace the lease (atomic rename; readers never see half a file)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(asdict(lease)))
        tmp.replace(self.path)

    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the lease's lock file; yields False (without waiting) if another holds it."""
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def compare_and_set(self, expect: Callable[[Lease | None], bool], new: Lease) -> bool:
        """Write ``new`` if ``expect(current)`` holds, atomically across processes."""
        with self.locked() as held:
            if not held or not expect(self.read()):
                return False
            self.write(new)
            return True

    def renew(self, holder: str, until: float) -> bool:
        """Extend the lease if ``holder`` still holds it (a claim by another run wins)."""
        with self.locked() as held:
            old = self.read()
            if not held or old is None or old.holder != holder:
                return False
            self.write(old.renewed(until))
            return True

    def remove(self) -> None:
        """Delete the lease and its lock file."""
        for path in (self.path, self.path.with_name(self.path.name + ".lock")):
            path.unlink(missing_ok=True)


class LeaseKeeper:
    """Renews a lease from a daemon thread until stopped; a failed renewal is retried.

    ``renew(until)`` is the backend's call; it runs every ``duration / 4`` seconds (at least
    every :data:`MIN_INTERVAL`), so a lease lapses only when this process stops.
    """

    def __init__(self, renew: Callable[[float], None], duration: float) -> None:
        self._renew = renew
        self.duration = duration
        self.interval = max(MIN_INTERVAL, duration / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.renewals = 0

    def start(self) -> None:
        """Start renewing (the first renewal happens at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="livesandbox-lease", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._renew(time.time() + self.duration)
                self.renewals += 1
                self.last_error = None
            except Exception as exc:  # the next tick retries; the lease has slack
                self.last_error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop renewing (the lease then lapses unless the caller hands it on)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def lease_path(root: Path, sandbox_id: str) -> Path:
    """Where the file lease of sandbox ``sandbox_id`` lives under the state folder ``root``."""
    return root / f"{sandbox_id}{LEASE_SUFFIX}"


def lapsed(record: SandboxRecord) -> bool:
    """True for a listed sandbox whose lease ran out (and that nothing protects)."""
    return (
        not record.protected
        and record.reapable
        and record.lease_expires_in is not None
        and record.lease_expires_in < 0
    )


def sweep_lapsed(backend: Backend, scope: ListScope) -> threading.Thread:
    """Reap ``backend``'s sandboxes whose lease lapsed, in a daemon thread (started, returned).

    The plugin calls it once a run's sandbox is up, so sandboxes of killed runs go without
    anyone running ``livesandbox gc``; failures are ignored (gc reports them).
    """

    def sweep() -> None:
        with contextlib.suppress(Exception):
            for record in backend.list_sandboxes(scope):
                if lapsed(record):
                    with contextlib.suppress(Exception):
                        backend.reap(record)

    thread = threading.Thread(target=sweep, name="livesandbox-sweep", daemon=True)
    thread.start()
    return thread

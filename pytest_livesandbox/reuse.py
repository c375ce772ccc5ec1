"""Warm sandboxes (``--sandbox-reuse``): the reuse key, claiming one, resetting it, handing it back.

Backend-neutral; each backend stores the claim and lease its own way (``Backend.claim_warm``,
``keep_warm``, ``heal``)::

    key = reuse_key(config, backend)
    info = claim(backend, config, key, run_id)          # None: provision a new one
    if info is None:
        info = backend.provision(config, new_sandbox_id(), run_id)
        prepare(info, key)                               # snapshot the post-startup database
    ...
    backend.keep_warm(info, time.time() + config.reuse_idle)   # at the end of the run

A reused sandbox is reset before any test sees it: the database goes back to its post-startup
snapshot (:mod:`.postgres.reset`), faults left in the chaos ledger are undone, and the app is
restarted only if its health check fails. A sandbox that cannot be reset is removed and a new one
provisioned.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from .errors import SandboxError
from .postgres.reset import DEFAULT_RESET
from .redaction import redact
from .reusekey import plugin_version, reuse_key

if TYPE_CHECKING:
    from .config import SandboxConfig
    from .info import SandboxInfo
    from .protocol import Backend

__all__ = ["claim", "plugin_version", "prepare", "reset", "reuse_key"]


def prepare(info: SandboxInfo, key: str) -> None:
    """Mark a freshly provisioned sandbox reusable: record its key, snapshot its database."""
    info.extra["reuse_key"] = key
    info.extra["reused"] = False
    if info.db is not None and info.db.admin_password:
        DEFAULT_RESET().snapshot(info.db)


def claim(
    backend: Backend,
    config: SandboxConfig,
    key: str,
    run_id: str,
    failures: list[str] | None = None,
) -> SandboxInfo | None:
    """A warm sandbox of this key, claimed and reset; ``None`` if none could be had.

    Timings: ``attach_s`` (claim and reconnect), ``reset_s``; the caller adds ``ready_s``.
    A claimed sandbox that could not be reset is removed; why goes into ``failures``.
    """
    began = time.perf_counter()
    info = backend.claim_warm(config, key, run_id, time.time() + max(config.lease, 10.0))
    if info is None:
        return None
    attached = time.perf_counter()
    info.timings.clear()  # the provisioning times were another run's; reset() may add build_s
    try:
        info.extra.update(reset(backend, info, config))
    except (SandboxError, OSError, Exception) as exc:
        # Cannot be made clean again: it goes, and the caller provisions a new one.
        with contextlib.suppress(Exception):
            backend.teardown(info)
        if failures is not None:
            first = (str(exc).splitlines() or [""])[0][:300]
            failures.append(redact(f"{type(exc).__name__}: {first}", info.secret_values()))
        return None
    info.extra["reused"] = True
    info.extra["reuse_key"] = key
    info.timings["attach_s"] = round(attached - began, 4)
    info.timings["reset_s"] = round(time.perf_counter() - attached, 4)
    return info


def reset(backend: Backend, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
    """Undo faults (ledger), restore the database, heal the app (restart only if unhealthy).

    The database first, so a restarted app, or one rolled to a new build (kube), starts on
    clean data; after a roll the snapshot is taken again: the new build's start-up rows are the
    seed from now on.
    """
    done: dict[str, Any] = {}
    repaired = backend.chaos(info, owner=f"reuse-{info.run_id}").repair(only_stale=False)
    if repaired:
        done["faults_repaired"] = repaired
    db = info.db if info.db is not None and info.db.admin_password else None
    if db is not None:
        DEFAULT_RESET().restore(db)
    done.update(backend.heal(info, config))
    if db is not None and done.get("app_rolled"):
        DEFAULT_RESET().snapshot(db)
    return done

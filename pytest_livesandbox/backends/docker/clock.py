"""The app container's clock: libfaketime and its control file bind-mounted from this machine.

With ``livesandbox_fake_clock = on`` (or ``auto`` with the library installed) the sandbox folder
gets ``clock/`` holding a copy of the library (:func:`~..chaos.clock.find_faketime`, so
``LIVESANDBOX_FAKETIME_LIB`` works here too) and the control file ``app.clock``; the folder is
mounted read-only at ``/livesandbox-clock`` in the app container only, whose environment names
it in ``LD_PRELOAD`` and ``FAKETIME_TIMESTAMP_FILE``. The folder (not the file) is mounted, so the
atomic replacement of the file on this machine is what the container sees at once::

    env, volumes = clock_mount(config, info)            # {} / {}: the clock stays real
    ...container started with env and volumes...
    check_loaded(config, info, container)              # /proc/<pid>/maps names the library
    write_spec(control_path(info), 3600)               # the app is an hour ahead
    write_spec(control_path(info))                     # back to the real time

The container keeps the preload for its life (as the local supervisor's app does); after every
clock fault the control file is back to ``+0 x1``, which libfaketime reads as the real time.
Bind mounts need the daemon on this machine (a ``unix://`` socket).
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...chaos.clock import (
    CONTROL_FILE,
    INSTALL_HINT,
    NOT_PRELOADABLE,
    find_faketime,
    is_static_elf,
    note_sleep_problem,
    preload_env,
    write_spec,
)
from ...errors import ProvisionError
from .host import daemon_address

if TYPE_CHECKING:
    from ...config import SandboxConfig
    from ...info import SandboxInfo

MOUNT = "/livesandbox-clock"


def clock_mount(config: SandboxConfig, info: SandboxInfo) -> tuple[dict[str, str], dict[str, Any]]:
    """The app container's extra environment and volumes (both empty: the clock stays real).

    Records ``info.extra["fake_clock"]``; with ``fake_clock=on`` a missing library or a remote
    daemon is a :class:`ProvisionError`.
    """
    if config.fake_clock == "off" or not info.workdir:
        return {}, {}
    library = find_faketime()
    remote = not daemon_address().startswith("unix://")
    if library is None or remote:
        if config.fake_clock == "auto":
            return {}, {}
        why = (
            f"libfaketime is not installed ({INSTALL_HINT})"
            if library is None
            else f"the Docker daemon ({daemon_address()}) is not on this machine, so the "
            "library and control file cannot be bind-mounted into the app container"
        )
        raise ProvisionError(f"--sandbox-fake-clock=on: {why}; or set it to auto/off")
    folder = Path(info.workdir) / "clock"
    folder.mkdir(mode=0o755, exist_ok=True)
    copied = folder / library.name
    shutil.copyfile(library, copied)
    os.chmod(copied, 0o644)
    control = folder / CONTROL_FILE
    write_spec(control)
    info.extra["fake_clock"] = {
        "library": str(library),
        "control": str(control),
        "mount": MOUNT,
    }
    note_sleep_problem(library, info.extra["fake_clock"])
    env = preload_env(Path(MOUNT) / library.name, Path(MOUNT) / CONTROL_FILE)
    return env, {str(folder): {"bind": MOUNT, "mode": "ro"}}


def control_path(info: SandboxInfo) -> Path | None:
    """The control file on this machine (None: the app runs without libfaketime)."""
    clock = info.extra.get("fake_clock")
    return Path(clock["control"]) if clock else None


def started_at(container: Any) -> float:
    """When the container's process started (libfaketime's ``start`` for a rate)."""
    container.reload()
    stamp = str(container.attrs.get("State", {}).get("StartedAt") or "")
    try:
        # Docker gives nanoseconds ("...T11:40:01.123456789Z"); keep microseconds.
        head, _, frac = stamp.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
    except ValueError:
        return 0.0


def preload_missing(container: Any) -> str | None:
    """Why the container's main process has not loaded libfaketime (None: it has, or unknown).

    Reads ``/proc/<pid>/maps`` of the process on this machine (the daemon is local); an
    unreadable ``/proc`` (rootless daemon, another user) is "unknown".
    """
    container.reload()
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    try:
        maps = Path(f"/proc/{pid}/maps").read_text() if pid else ""
    except OSError:
        return None
    if not maps or "libfaketime" in maps:
        return None
    program = f"/proc/{pid}/exe"
    try:
        name = os.readlink(program)
    except OSError:
        name = "?"
    if is_static_elf(program):
        return (
            f"the app container's program {name} is statically linked: LD_PRELOAD cannot load "
            "libfaketime into it; the clock marker needs a dynamically linked app"
        )
    return f"the app container's process (pid {pid}, {name}) did not load libfaketime: " + (
        NOT_PRELOADABLE
    )


def check_loaded(
    config: SandboxConfig, info: SandboxInfo, container: Any, wait_s: float = 3.0
) -> None:
    """Once started: the preload took, else ``ProvisionError`` (``on``) or no clock (``auto``).

    Polls for ``wait_s`` (the container's process may still be the runtime's init).
    """
    if "fake_clock" not in info.extra:
        return
    deadline = time.monotonic() + wait_s
    while (why := preload_missing(container)) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if why is None:
        return
    if config.fake_clock == "auto":
        info.extra.pop("fake_clock")
        return
    raise ProvisionError(f"--sandbox-fake-clock=on: {why}; or set it to auto/off")

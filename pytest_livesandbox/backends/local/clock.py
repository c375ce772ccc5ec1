"""The app's clock on the local backend: libfaketime preloaded by the supervisor, one control file.

With ``livesandbox_fake_clock = on`` (``auto``: when the library is installed; default ``off``:
Debian's libfaketime 0.9.10 makes CPython >= 3.11's ``time.sleep`` fail, see docs/chaos.md)
the supervisor starts
the app with ``LD_PRELOAD`` naming Debian's ``libfaketimeMT.so.1`` and
``FAKETIME_TIMESTAMP_FILE`` naming ``app.clock`` in the sandbox folder. The library re-reads that
file on every clock call (``FAKETIME_NO_CACHE=1``), so writing it moves the running app's clock
at once; the tests, the supervisor and PostgreSQL never load the library. ``CLOCK_MONOTONIC``
is left alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``): timeouts and pools keep working::

    lib = find_faketime()                       # None: apt-get install -y faketime libfaketime
    env = preload_env(lib, workdir / CONTROL_FILE)
    write_spec(workdir / CONTROL_FILE, offset_s=3600, rate=1, app_started_at=t0)
    assert loaded_in(pid)                       # /proc/PID/maps names the library
    write_spec(workdir / CONTROL_FILE)          # back to the real time: "+0 x1"

The file is replaced atomically (``os.replace``): the library never reads half a line. libfaketime
computes ``start + offset + (now - start) * rate`` with ``start`` the moment the app loaded it,
so a rate from now on needs the app's start time (the supervisor records it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ...chaos.clock import (
    CONTROL_FILE,
    INSTALL_HINT,
    NEUTRAL_SPEC,
    find_faketime,
    is_static_elf,
    note_sleep_problem,
    preload_env,
    read_spec,
    spec_for,
    write_spec,
)
from ...errors import ProvisionError

if TYPE_CHECKING:
    from ...config import SandboxConfig
    from ...info import SandboxInfo

__all__ = [
    "CONTROL_FILE",
    "INSTALL_HINT",
    "NEUTRAL_SPEC",
    "app_clock_env",
    "executable",
    "find_faketime",
    "is_static_elf",
    "loaded_in",
    "preload_env",
    "read_spec",
    "spec_for",
    "static_command",
    "write_spec",
]


def loaded_in(pid: int) -> bool:
    """True when process ``pid`` has libfaketime mapped (the preload took)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "libfaketime" in maps


def executable(pid: int) -> str:
    """The program file of ``pid`` (for messages)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return "?"


def static_command(cmd: tuple[str, ...]) -> str | None:
    """The app command's program when it is a statically linked ELF (preloading cannot work)."""
    if not cmd:
        return None
    program = shutil.which(cmd[0]) or cmd[0]
    return program if is_static_elf(program) else None


def app_clock_env(
    config: SandboxConfig, info: SandboxInfo, workdir: Path, preload: str
) -> dict[str, str]:
    """What the supervisor adds to the app's environment (empty: the clock stays real).

    Records the library and control file in ``info.extra["fake_clock"]``; with
    ``fake_clock=on`` a missing library or a statically linked app is a :class:`ProvisionError`.
    """
    if config.fake_clock == "off" or not config.app_cmd:
        return {}
    library = find_faketime()
    static = static_command(config.app_cmd)
    if library is None or static:
        if config.fake_clock == "auto":
            return {}
        why = (
            f"libfaketime is not installed ({INSTALL_HINT})"
            if library is None
            else (
                f"the app command's program {static} is statically linked, so LD_PRELOAD cannot "
                "load libfaketime into it; use a dynamically linked build"
            )
        )
        raise ProvisionError(f"--sandbox-fake-clock=on: {why}, or set it to auto/off")
    control = workdir / CONTROL_FILE
    write_spec(control)
    info.extra["fake_clock"] = {"library": str(library), "control": str(control)}
    note_sleep_problem(library, info.extra["fake_clock"])
    env = preload_env(library, control)
    if preload:
        env["LD_PRELOAD"] = f"{library}:{preload}"
    return env

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

import glob
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ...errors import ProvisionError

if TYPE_CHECKING:
    from ...config import SandboxConfig
    from ...info import SandboxInfo

CONTROL_FILE = "app.clock"
NEUTRAL_SPEC = "+0 x1"
LIBRARY_NAMES = ("libfaketimeMT.so.1", "libfaketime.so.1")
_SEARCH = (
    "/usr/lib/*/faketime",
    "/usr/lib/faketime",
    "/usr/lib64/faketime",
    "/usr/local/lib/faketime",
    "/usr/local/lib",
)
INSTALL_HINT = "install it: apt-get install -y faketime libfaketime (Debian/Ubuntu)"
_ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3


def find_faketime() -> Path | None:
    """The libfaketime shared object to preload (``LIVESANDBOX_FAKETIME_LIB`` wins), or None."""
    forced = os.environ.get("LIVESANDBOX_FAKETIME_LIB")
    if forced:
        return Path(forced) if Path(forced).is_file() else None
    for pattern in _SEARCH:
        for folder in sorted(glob.glob(pattern)):
            for name in LIBRARY_NAMES:
                candidate = Path(folder) / name
                if candidate.is_file():
                    return candidate
    return None


def preload_env(library: Path, control: Path) -> dict[str, str]:
    """What the supervisor adds to the app's environment (nothing else gets it)."""
    return {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DISABLE_SHM": "1",
        "NO_FAKE_STAT": "1",
    }


def spec_for(offset_s: float = 0.0, rate: float = 1.0, *, app_started_at: float = 0.0) -> str:
    """The control-file line for "``offset_s`` ahead, running ``rate`` times as fast from now".

    >>> spec_for(3600)
    '+3600.000000 x1'
    >>> spec_for()
    '+0 x1'
    """
    if offset_s == 0 and rate == 1:
        return NEUTRAL_SPEC
    if rate != 1:
        # libfaketime scales the time since the app started; make the speed-up start now.
        offset_s -= (time.time() - app_started_at) * (rate - 1)
    return f"{offset_s:+.6f} x{rate:g}"


def write_spec(
    control: Path, offset_s: float = 0.0, rate: float = 1.0, *, app_started_at: float = 0.0
) -> str:
    """Replace the control file atomically; returns the line written."""
    spec = spec_for(offset_s, rate, app_started_at=app_started_at)
    tmp = control.with_name(control.name + f".{os.getpid()}.tmp")
    tmp.write_text(spec + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, control)
    return spec


def read_spec(control: Path) -> str | None:
    """The control file's line (``None`` when there is no file)."""
    try:
        return control.read_text().strip()
    except OSError:
        return None


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


def is_static_elf(path: str | Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:4] != _ELF_MAGIC or len(head) < 64:
                return False
            is64 = head[4] == 2
            order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
            if is64:
                phoff = int.from_bytes(head[32:40], order)
                phentsize = int.from_bytes(head[54:56], order)
                phnum = int.from_bytes(head[56:58], order)
            else:
                phoff = int.from_bytes(head[28:32], order)
                phentsize = int.from_bytes(head[42:44], order)
                phnum = int.from_bytes(head[44:46], order)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    types = (int.from_bytes(table[i : i + 4], order) for i in range(0, len(table), phentsize or 1))
    return _PT_INTERP not in types


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
    env = preload_env(library, control)
    if preload:
        env["LD_PRELOAD"] = f"{library}:{preload}"
    return env

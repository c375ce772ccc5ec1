"""libfaketime for every backend: the library, its control-file line, and the app's own time.

The ``clock`` fault moves the *app's* clock only: libfaketime is preloaded into the app
(``LD_PRELOAD``) with ``FAKETIME_TIMESTAMP_FILE`` naming a control file it re-reads on every
clock call (``FAKETIME_NO_CACHE=1``); writing the file moves the running app's clock. Where the
app runs is the backend's business (a process, a container with the folder bind-mounted, a pod
with the library in a ConfigMap and the file in an ``emptyDir``); what is the same lives here::

    lib = find_faketime()                            # None: apt-get install -y libfaketime
    env = preload_env(lib, Path("/livesandbox-clock/app.clock"))
    write_spec(control, offset_s=3600)               # "+3600.000000 x1"
    problem = clock_problem(app_date_offset(url), 3600, rate=1)   # None: the app's clock moved
    write_spec(control)                              # back to the real time: "+0 x1"

``CLOCK_MONOTONIC`` is left alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``): timeouts and pools keep
working. Debian bookworm's libfaketime 0.9.10 then breaks ``time.sleep`` in CPython >= 3.11
(``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` gets a negative time: EINVAL, upstream
issue #426, fixed in 0.9.11); faking the monotonic clock as well is no way out (threading
waits with a timeout hang, upstream #390). See docs/chaos.md#clock.
"""

from __future__ import annotations

import email.utils
import functools
import glob
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ..errors import ChaosError

if TYPE_CHECKING:
    from ..config import SandboxConfig
    from .markers import ChaosPlan, Fault

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
#: Why an app's clock may not move although the library was preloaded (for messages).
NOT_PRELOADABLE = (
    "a statically linked program, a runtime that reads the clock without libc (Go), a libc "
    "that cannot load this build of the library (musl/Alpine, an older glibc) or an app that "
    "clears LD_PRELOAD cannot have its clock moved; the clock fault needs a dynamically linked "
    "glibc app"
)
_ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3
#: The HTTP Date header has whole seconds; allow that and a little scheduling on top.
DATE_SLACK_S = 2.5


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
    """What the app's environment gets (nothing else of the sandbox gets it)."""
    return {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DISABLE_SHM": "1",
        "NO_FAKE_STAT": "1",
    }


class FakeClockWarning(UserWarning):
    """The app runs under a libfaketime build with a known defect (see :func:`sleep_problem`)."""


@functools.lru_cache(maxsize=8)
def _sleep_probe(library: str, mtime_ns: int) -> str | None:
    env = {**os.environ, **preload_env(Path(library), Path("/nonexistent/app.clock"))}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import time; time.sleep(0.001)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "time.sleep(0.001) hangs"
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def sleep_problem(library: Path) -> str | None:
    """Why CPython >= 3.11's ``time.sleep`` fails under ``library`` (None: it works).

    Measured, not guessed: this machine's Python (>= 3.11, as the plugin needs) sleeps 1 ms with
    the library preloaded as the app gets it; Debian bookworm's 0.9.10 gives ``OSError: [Errno
    22] Invalid argument``. Cached per library file (~30 ms once).
    """
    try:
        mtime = library.stat().st_mtime_ns
    except OSError:
        return None
    why = _sleep_probe(str(library), mtime)
    if why is None:
        return None
    return (
        f"under {library}, time.sleep() of CPython >= 3.11 fails ({why}): a Python app that "
        "sleeps gets errors for the whole run (libfaketime 0.9.10's clock_nanosleep with an "
        "absolute CLOCK_MONOTONIC time, upstream issue #426); point LIVESANDBOX_FAKETIME_LIB at "
        "libfaketime >= 0.9.11 (see docs/chaos.md#clock)"
    )


def note_sleep_problem(library: Path, record: dict[str, Any]) -> None:
    """Probe ``library`` (:func:`sleep_problem`); record and warn about a defect once."""
    why = sleep_problem(library)
    if why:
        record["sleep_problem"] = why
        warnings.warn(FakeClockWarning(why), stacklevel=2)


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


@functools.lru_cache(maxsize=1)
def _http() -> httpx.Client:
    # One client per process: making one (its TLS context) costs ~0.1 s, more than the request.
    return httpx.Client()


def app_date_offset(url: str, timeout: float = 5.0) -> float | None:
    """The app's own clock minus ours, from the ``Date`` header of ``GET url`` (None: no header).

    Nearly every HTTP server stamps its responses with its clock; one request reads it without
    knowing anything about the app. Whole seconds: compare with :data:`DATE_SLACK_S`.
    """
    began = time.time()
    response = _http().get(url, timeout=timeout)
    ended = time.time()
    header = response.headers.get("date")
    if not header:
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
    # The server stamped it somewhere in [began, ended]; Date drops the fraction of a second.
    return stamp + 0.5 - (began + ended) / 2


def clock_problem(seen: float | None, offset_s: float, rate: float = 1.0) -> str | None:
    """Why the app's reported offset ``seen`` is not the one asked for (None: it is, or unknown).

    Right after a fault is applied the app's clock is ``offset_s`` ahead; a rate adds little in
    the milliseconds of one request, so it only widens the tolerance.

    >>> clock_problem(3600.4, 3600) is None, clock_problem(0.3, 3600)
    (True, "the app's Date header says its clock is +0s from ours, not +3600s")
    """
    if seen is None:
        return None
    slack = DATE_SLACK_S * max(1.0, rate)
    if abs(seen - offset_s) <= slack:
        return None
    return (
        f"the app's Date header says its clock is {round(seen):+d}s from ours, "
        f"not {round(offset_s):+d}s"
    )


def clock_problems(plan: ChaosPlan, config: SandboxConfig, *, has_app: bool) -> list[str]:
    """Why this run cannot move the app's clock for ``plan`` (collection-time check).

    For the backends that carry the library into a container (docker, kube, gke); whether the
    app's program can load it is known only once it runs (a setup error naming why).
    """
    if not any(fault.kind == "clock" for fault in plan.faults):
        return []
    return clock_setup_problems(config, has_app=has_app)


def clock_setup_problems(config: SandboxConfig, *, has_app: bool) -> list[str]:
    """What keeps this run from moving the app's clock at all (every backend, local too)."""
    if not has_app:
        return ["@clock: this sandbox runs no app"]
    if config.fake_clock == "off":
        return [
            "@clock: the app runs without libfaketime (livesandbox_fake_clock = off, the "
            "default); set livesandbox_fake_clock = on to move its clock"
        ]
    if find_faketime() is None:
        return [f"@clock: moving the app's clock needs libfaketime; {INSTALL_HINT}"]
    return []


def control_fault(
    fault: Fault,
    record: dict[str, Any],
    *,
    write: Callable[[float, float], str],
    reset: Callable[[], object],
    check_url: str | None,
) -> Callable[[], dict[str, Any]]:
    """Apply a clock fault through ``write(offset_s, rate) -> spec`` and check the app's Date.

    The app's own clock (its ``Date`` header on ``check_url``) must show the offset, else the
    control file is reset and a :class:`ChaosError` says why; the returned undo resets it and
    checks the app is back on the real time. The caller keeps the ledger.
    """
    offset_s, rate = float(fault.params["offset_s"]), float(fault.params["rate"])
    began = time.perf_counter()
    try:
        spec = write(offset_s, rate)
        record.update(spec=spec, apply_s=round(time.perf_counter() - began, 6))
        seen = app_date_offset(check_url) if check_url else None
    except BaseException:
        reset()
        raise
    problem = clock_problem(seen, offset_s, rate)
    if problem:
        reset()
        raise ChaosError(f"clock: {problem}: {NOT_PRELOADABLE}")
    record["app_offset_s"] = None if seen is None else round(seen, 1)

    def undo() -> dict[str, Any]:
        reset()
        after = app_date_offset(check_url) if check_url else None
        back = clock_problem(after, 0.0)
        if back:
            raise ChaosError(f"clock: not back on the real time after the fault: {back}")
        return {
            "restored_spec": NEUTRAL_SPEC,
            "app_offset_after_s": None if after is None else round(after, 1),
        }

    return undo

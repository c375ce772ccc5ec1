"""Process identity: is the process that made a sandbox still the same, living process.

A pid alone can be reused after a crash; the kernel's start time (``/proc/<pid>/stat`` field 22)
tells a reused pid apart.
"""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return []
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat[stat.rfind(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else ``None``."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None


def is_zombie(pid: int) -> bool:
    """True if ``pid`` has exited and only waits for its parent to reap it (state Z or X).

    A ``kill -9``-ed pytest stays a zombie until its shell or CI runner reaps it; it is dead.
    """
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def process_alive(pid: int, started: str | None = None) -> bool:
    """True if ``pid`` runs (and, when ``started`` is given, is the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if is_zombie(pid):
        return False
    if started is None:
        return True
    current = start_time(pid)
    return current is None or current == started

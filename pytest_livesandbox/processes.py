"""Process identity: is the process that made a sandbox still the same, living process.

A pid alone can be reused after a crash; the kernel's start time (``/proc/<pid>/stat`` field 22)
tells a reused pid apart.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


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
    if started is None:
        return True
    current = start_time(pid)
    return current is None or current == started

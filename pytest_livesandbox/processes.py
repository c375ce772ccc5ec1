"""Processes of the plugin's own making: are they alive, and stop them for sure.

A pid alone can be reused after a crash; the kernel's start time tells a reused pid apart, so
ownership records store ``(pid, start_time(pid))``. A zombie counts as gone::

    started = start_time(os.getpid())
    process_alive(pid, started)                 # False once it exited (or the pid was reused)
    terminate(pid, timeout=5, group=True)       # SIGTERM the leader, then SIGKILL the group

The stdlib-only scripts that run outside the plugin (the fault proxy, the app supervisor) cannot
import this module and keep their own one-line check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot on Linux, as text), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        try:
            return repr(psutil.Process(pid).create_time())
        except (psutil.Error, ValueError):
            return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """True if ``pid`` runs and is no zombie (and, given ``started``, is the same process)."""
    if pid <= 0:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        pass  # another user's process: it exists
    if started is None:
        return True
    current = start_time(pid)
    return current is None or current == started


def terminate(
    pid: int, timeout: float = 5.0, *, group: bool = False, first: int = signal.SIGTERM
) -> None:
    """Send ``first`` to ``pid``; after ``timeout`` SIGKILL it (with ``group``: its whole group).

    Only the leader gets the polite signal: PostgreSQL wants SIGINT on the postmaster alone (fast
    shutdown), and an app decides itself how to stop its children. A child of ours is reaped.
    Returns once everything is gone; a Ctrl-C meanwhile does not abandon it half-way.
    """
    try:
        os.kill(pid, first)
    except (ProcessLookupError, PermissionError):
        _reap(pid)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not (_group_alive(pid) if group else process_alive(pid)):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not process_alive(pid):
            return
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Only zombies left (children of ours not reaped yet) count as gone.
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

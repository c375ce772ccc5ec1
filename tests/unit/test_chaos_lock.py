"""The sandbox lock: chaos tests exclude everything else, and are not starved by a stream of
ordinary tests. flock locks belong to open file descriptions, so threads that each open the
files behave like separate processes here."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pytest_livesandbox.chaos.lock import SandboxLock


def hold(lock: SandboxLock, exclusive: bool, seconds: float, log: list[str], name: str) -> None:
    with lock.hold(exclusive=exclusive):
        log.append(f"{name}+")
        time.sleep(seconds)
        log.append(f"{name}-")


def start(*args: object) -> threading.Thread:
    thread = threading.Thread(target=hold, args=args)
    thread.start()
    return thread


def test_shared_holders_overlap(tmp_path: Path) -> None:
    lock, log = SandboxLock(tmp_path), []
    threads = [start(lock, False, 0.2, log, name) for name in "ab"]
    for thread in threads:
        thread.join()
    assert log[:2] == ["a+", "b+"] or log[:2] == ["b+", "a+"]


def test_exclusive_waits_for_shared_and_blocks_newcomers(tmp_path: Path) -> None:
    lock, log = SandboxLock(tmp_path), []
    reader = start(lock, False, 0.3, log, "r1")
    time.sleep(0.05)
    writer = start(lock, True, 0.2, log, "w")
    time.sleep(0.05)
    late_reader = start(lock, False, 0.0, log, "r2")  # queued behind the waiting writer
    for thread in (reader, writer, late_reader):
        thread.join()
    assert log == ["r1+", "r1-", "w+", "w-", "r2+", "r2-"]

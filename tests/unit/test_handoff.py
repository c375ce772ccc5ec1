"""The xdist handoff file: private (0600), signed with a key only the run's processes hold."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_livesandbox.errors import SandboxError
from pytest_livesandbox.handoff import Handoff


def test_round_trip_through_the_address(tmp_path: Path) -> None:
    controller = Handoff(tmp_path / ".handoff-run1", bytes(range(32)))
    worker = Handoff.from_address(controller.address())
    assert worker.read() is None  # not written yet
    payload = {"info": {"db": {"password": "s3cret-password-1234"}}, "error": None}
    controller.write(payload)
    assert worker.read() == payload
    assert stat.S_IMODE(controller.path.stat().st_mode) == 0o600
    controller.remove()
    controller.remove()  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_another_key_or_a_changed_byte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".handoff-run2"
    Handoff(path, b"k" * 32).write({"info": None, "error": "AppCrashed: boom"})
    with pytest.raises(SandboxError, match="not this run's"):
        Handoff(path, b"x" * 32).read()
    sealed = bytearray(path.read_bytes())
    sealed[20] ^= 1
    path.write_bytes(bytes(sealed))
    with pytest.raises(SandboxError, match="not this run's"):
        Handoff(path, b"k" * 32).read()
    path.write_bytes(b"short")
    with pytest.raises(SandboxError, match="not this run's"):
        Handoff(path, b"k" * 32).read()


def test_create_names_the_run_and_removes_files_of_dead_controllers(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".handoff-old1-{dead.pid}").write_bytes(b"sealed")
    (tmp_path / f".handoff-old2-{dead.pid}.partial").write_bytes(b"sealed")
    (tmp_path / f".handoff-live-{os.getppid()}").write_bytes(b"sealed")
    handoff = Handoff.create(tmp_path, "abc123")
    assert handoff.path == tmp_path / f".handoff-abc123-{os.getpid()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".handoff-live-{os.getppid()}"]
    assert Handoff.create(tmp_path, "abc123").address()["key"] != handoff.address()["key"]

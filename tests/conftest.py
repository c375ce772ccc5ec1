"""Shared helpers for our own suite: pytester runs of the plugin and leak checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
DEMO_APP = REPO / "examples" / "demo_app" / "app.py"
DEMO_APP_CMD = f"{sys.executable} {DEMO_APP}"


@dataclass
class IsolatedState:
    """A private LIVESANDBOX_STATE_DIR for one inner run, and what it may have leaked."""

    path: Path

    def sandboxes(self) -> list[Path]:
        """Sandbox folders still present."""
        return sorted(p for p in self.path.iterdir() if p.is_dir()) if self.path.exists() else []

    def processes(self) -> list[psutil.Process]:
        """Processes started by the inner run (they inherit our private state dir variable)."""
        found = []
        marker = f"LIVESANDBOX_STATE_DIR={self.path}"
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == os.getpid():
                continue
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            if f"LIVESANDBOX_STATE_DIR={env.get('LIVESANDBOX_STATE_DIR')}" == marker:
                found.append(proc)
        return found

    def assert_clean(self) -> None:
        """Nothing left: no sandbox folder, no process."""
        leftovers = self.processes()
        for proc in leftovers:
            proc.kill()
        assert self.sandboxes() == [], f"sandbox folders left: {self.sandboxes()}"
        assert leftovers == [], f"processes left: {[p.cmdline() for p in leftovers]}"


@pytest.fixture
def isolated_state(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[IsolatedState]:
    """Point inner runs at a private state folder; check after the test that it is empty."""
    state = IsolatedState(pytester.path / "_livesandbox_state")
    monkeypatch.setenv("LIVESANDBOX_STATE_DIR", str(state.path))
    monkeypatch.delenv("CI", raising=False)
    for name in list(os.environ):
        if name.startswith("LIVESANDBOX_") and name not in {
            "LIVESANDBOX_STATE_DIR",
            "LIVESANDBOX_CACHE_DIR",
        }:
            monkeypatch.delenv(name)
    yield state

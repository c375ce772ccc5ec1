"""Inner test file: the run is stopped (SIGTERM, as CI runners do) while faults are in force."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest


@pytest.mark.resource_limits(memory="512Mi")
@pytest.mark.latency(ms=100, target="app")
def test_stopped_mid_fault(livesandbox) -> None:
    # Tell the outer test which cgroup holds the app now (cgroup mode), to check it goes away.
    limits = Path(livesandbox.info.workdir) / "app.cgroups"
    Path("cgroups.txt").write_text(limits.read_text() if limits.exists() else "")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the signal arrives here as KeyboardInterrupt


def test_never_runs() -> None:
    pass

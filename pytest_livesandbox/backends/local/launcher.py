"""Launch the chaos helper processes of the local backend: the fault proxy and the supervisor.

Both are standard-library scripts run by path with ``python -I -S`` (no site packages, no
``PYTHONPATH``), so they start in tens of milliseconds and never import the plugin::

    proxy = start_proxy(workdir, parent_pid=os.getpid())   # returns at once
    ...                                                      # start PostgreSQL meanwhile
    port = proxy.wait(timeout=10).set_route("db", "127.0.0.1:5432")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ...errors import ProvisionError
from ...faultproxy import SERVER_SCRIPT
from ...faultproxy.client import ProxyClient
from ...logtail import tail

HERE = Path(__file__).resolve().parent
PROXY_SCRIPT = SERVER_SCRIPT
SUPERVISOR_SCRIPT = HERE / "supervisor.py"
PROXY_STATE = "proxy.json"
PROXY_LOG = "proxy.log"
SUPERVISOR_STATE = "app.supervisor.json"


class ProxyProcess:
    """The fault proxy as a child process in its own session."""

    def __init__(self, workdir: Path, process: subprocess.Popen[bytes]) -> None:
        self.workdir = workdir
        self.process = process
        self.client: ProxyClient | None = None

    @property
    def pid(self) -> int:
        """The proxy's pid."""
        return self.process.pid

    def wait(self, timeout: float) -> ProxyClient:
        """Wait until the proxy listens; return a client for its control API."""
        if self.client is not None:
            return self.client
        state = self.workdir / PROXY_STATE
        deadline = time.monotonic() + timeout
        while not state.exists():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                what = f"exited with code {code}" if code is not None else f"not up in {timeout}s"
                raise ProvisionError(
                    f"the fault proxy {what}.\nLast output:\n{tail(self.workdir / PROXY_LOG)}\n"
                    "Hint: set livesandbox_fault_proxy = false to run without it."
                )
            time.sleep(0.005)
        data = json.loads(state.read_text())
        self.client = ProxyClient(int(data["control_port"]))
        return self.client


def start_proxy(workdir: Path, parent_pid: int) -> ProxyProcess:
    """Spawn the proxy (does not wait for it)."""
    with open(workdir / PROXY_LOG, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                str(PROXY_SCRIPT),
                "--state-file",
                str(workdir / PROXY_STATE),
                "--parent-pid",
                str(parent_pid),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProxyProcess(workdir, process)


def supervised(
    cmd: tuple[str, ...],
    workdir: Path,
    parent_pid: int,
    child_env: dict[str, str] | None = None,
) -> tuple[str, ...]:
    """``cmd`` wrapped in the supervisor, which restarts it whenever it exits.

    ``child_env`` goes into the app's environment only (not the supervisor's).
    """
    extra = tuple(f"--child-env={key}={value}" for key, value in (child_env or {}).items())
    return (
        sys.executable,
        "-I",
        "-S",
        str(SUPERVISOR_SCRIPT),
        "--state",
        str(workdir / SUPERVISOR_STATE),
        "--parent-pid",
        str(parent_pid),
        *extra,
        "--",
        *cmd,
    )


def supervisor_state(workdir: Path | str) -> dict[str, Any]:
    """The supervisor's published state (``pid``, ``restarts``, ``exits``), ``{}`` if none."""
    try:
        return dict(json.loads((Path(workdir) / SUPERVISOR_STATE).read_text()))
    except (OSError, ValueError):
        return {}


def watched_pid(outlives_run: bool) -> int:
    """The pid the proxy and supervisor watch (they stop with it); 0: the sandbox outlives it."""
    return 0 if outlives_run else os.getpid()

"""Is everything a local sandbox started still running (the backend's ``health()``).

A handful of ``kill 0`` and one small file read, so it can run before every test::

    health = local_health(info, postmaster_pid=4242, exit_code=None)
    health.problems        # ["PostgreSQL of sandbox 3f9c2a1b is not running. ..."] or []
    health.app_restarts    # restarts by the supervisor so far
"""

from __future__ import annotations

from pathlib import Path

from ...faultproxy.client import EXTRA_KEY as PROXY_KEY
from ...info import SandboxInfo
from ...logtail import tail
from ...processes import process_alive
from ...protocol import SandboxHealth
from .launcher import supervisor_state


def local_health(
    info: SandboxInfo, postmaster_pid: int | None, exit_code: int | None = None
) -> SandboxHealth:
    """What of ``info``'s processes died since start-up, and the app's restart count.

    ``postmaster_pid`` is the live postmaster on the sandbox's data folder (``None``: none),
    ``exit_code`` the server's exit code when this process started it and saw it exit.
    """
    health = SandboxHealth()
    datadir = info.extra.get("postgres_datadir")
    if datadir and postmaster_pid is None:
        how = f"exited with code {exit_code}" if exit_code is not None else "is not running"
        health.problems.append(
            f"PostgreSQL of sandbox {info.id} {how}.\nLast log lines:\n"
            f"{tail(Path(datadir) / 'postgres.log', lines=10)}"
        )
    proxy_pid = (info.extra.get(PROXY_KEY) or {}).get("pid")
    if proxy_pid and not process_alive(int(proxy_pid)):
        health.problems.append(
            f"the fault proxy of sandbox {info.id} (pid {proxy_pid}) exited.\nLast log lines:\n"
            f"{tail(Path(str(info.workdir)) / 'proxy.log', lines=10)}"
        )
    app_pid = info.extra.get("app_pid")
    if app_pid and not process_alive(int(app_pid)):
        health.problems.append(
            f"the app of sandbox {info.id} is gone: its supervisor (pid {app_pid}) exited, so "
            f"nothing restarts it.\nLast output:\n{tail(Path(info.extra['app_log']), lines=10)}"
        )
    elif app_pid and info.workdir:
        health.app_restarts = int(supervisor_state(info.workdir).get("restarts") or 0)
    return health

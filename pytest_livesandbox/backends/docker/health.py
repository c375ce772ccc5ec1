"""Is every container of a docker sandbox still there and running (the backend's ``health()``).

One ``containers.list(sparse=True)`` call per test, filtered by the sandbox's label, and one
inspect of the app container for its ``RestartCount`` (restarts by its ``on-failure`` policy,
e.g. after a crash or an OOM kill; a stop/start by a chaos fault does not count)::

    docker_health(client, info).problems       # ["PostgreSQL of sandbox 3f9c2a1b exited (...)"]
    docker_health(client, info).app_restarts   # 1

A daemon that does not answer is not reported here (the sandbox may be fine; teardown says more).
"""

from __future__ import annotations

from typing import Any

import docker.errors

from ...errors import ClusterUnreachable
from ...info import SandboxInfo
from ...logtail import probe_lines
from ...protocol import SandboxHealth
from .postgres import logs_tail
from .resources import SANDBOX_ID


def docker_health(client: Any, info: SandboxInfo) -> SandboxHealth:
    """Containers of ``info`` removed or exited from outside, one line each."""
    health = SandboxHealth()
    try:
        listed = client.containers.list(
            all=True, sparse=True, filters={"label": f"{SANDBOX_ID}={info.id}"}
        )
    except (docker.errors.DockerException, ClusterUnreachable):
        return health
    found = {str(c.attrs["Names"][0]).lstrip("/"): c for c in listed}
    app = (info.extra.get("containers") or {}).get("app")
    if app in found:
        try:
            health.app_restarts = int(client.api.inspect_container(app).get("RestartCount") or 0)
        except (docker.errors.DockerException, ClusterUnreachable):
            pass
    probes = probe_lines(info.extra.get("health_path"))  # our probe's access-log lines: not news
    for component, name in (info.extra.get("containers") or {}).items():
        what = "PostgreSQL" if component == "db" else f"the {component} container"
        container = found.get(name)
        if container is None:
            health.problems.append(
                f"{what} of sandbox {info.id} ({name}) is gone: removed from outside"
            )
        elif container.attrs.get("State") in ("exited", "dead"):
            health.problems.append(
                f"{what} of sandbox {info.id} exited ({container.attrs.get('Status')}).\n"
                f"Last log lines:\n{logs_tail(container, lines=10, drop=probes)}"
            )
    return health

"""The app container's image, port and state: the docker backend's pure-ish helpers.

app_image, pg_image = component_images(config.image)
port = container_port(app_env, image_attrs["Config"].get("ExposedPorts"))
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ...errors import AppCrashed, ClusterUnreachable, ProvisionError
from .postgres import logs_tail

DEFAULT_POSTGRES_IMAGE = "postgres:15"
APP_COMPONENTS = ("app", "backend")
DB_COMPONENTS = ("postgres", "db")
PROXY_COMPONENT = "fault-proxy"  # its image: see .faultproxy
DEFAULT_APP_PORT = 8000


def component_images(images: tuple[tuple[str, str], ...]) -> tuple[str | None, str]:
    """``(app image or None, postgres image)`` from ``--sandbox-image`` pairs.

    >>> component_images((("app", "myapp:dev"),))
    ('myapp:dev', 'postgres:15')
    """
    app: str | None = None
    postgres = DEFAULT_POSTGRES_IMAGE
    for component, image in images:
        if component in APP_COMPONENTS:
            app = image
        elif component in DB_COMPONENTS:
            postgres = image
        elif component != PROXY_COMPONENT:
            raise ProvisionError(
                f"--sandbox-image {component}={image}: the docker backend runs the components "
                "app (alias backend), postgres (alias db) and fault-proxy; use app=IMAGE, "
                "postgres=IMAGE or fault-proxy=IMAGE"
            )
    return app, postgres


def container_port(app_env: dict[str, str], exposed: dict[str, Any] | None) -> int:
    """The port the app listens on inside its container.

    ``PORT`` from the app environment, else the image's one exposed TCP port, else 8000.

    >>> container_port({}, {"8080/tcp": {}}), container_port({"PORT": "9000"}, None)
    (8080, 9000)
    """
    if app_env.get("PORT", "").isdigit():
        return int(app_env["PORT"])
    tcp = [int(p.split("/")[0]) for p in (exposed or {}) if p.endswith("/tcp")]
    return tcp[0] if len(tcp) == 1 else DEFAULT_APP_PORT


def ensure_running(container: Any, image: str, drop: Iterable[str] = ()) -> None:
    """Raise :class:`AppCrashed` with exit code and last output if the app container stopped.

    ``drop``: marks of our probe's access-log lines (``logtail.probe_lines``), left out.
    """
    container.reload()
    if container.status not in ("exited", "dead"):
        return
    state = container.attrs.get("State", {})
    oom = " (killed for exceeding its memory limit)" if state.get("OOMKilled") else ""
    raise AppCrashed(
        f"the app container (image {image}) exited with code {state.get('ExitCode')}{oom} during "
        f"start-up.\nLast output:\n{logs_tail(container, drop=drop)}\n"
        "Hint: run the image yourself with DATABASE_URL and PORT set to see why, e.g. "
        f"`docker run --rm -e DATABASE_URL=postgresql://... -e PORT=8000 {image}`."
    )


def window_logs(
    client: docker.DockerClient, containers: dict[str, str], since: float, until: float, dest: Path
) -> list[Path]:
    """Write each container's output of ``[since, until]`` to ``dest/<component>.log``.

    A container that is gone (or a daemon that stopped answering) is skipped: artifacts are
    best effort and never fail the test report.
    """
    written = []
    for component, name in containers.items():
        try:
            data: bytes = client.containers.get(name).logs(
                since=int(since), until=int(until) + 1, timestamps=True
            )
        except (docker.errors.DockerException, ClusterUnreachable):
            continue
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{component}.log"
        path.write_bytes(data)
        written.append(path)
    return written

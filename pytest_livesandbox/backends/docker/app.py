"""The app container's image, port and state: the docker backend's pure-ish helpers.

app_image, pg_image = component_images(config.image)
port = container_port(app_env, image_attrs["Config"].get("ExposedPorts"))
"""

from __future__ import annotations

from typing import Any

from ...errors import AppCrashed, ProvisionError
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


def ensure_running(container: Any, image: str) -> None:
    """Raise :class:`AppCrashed` with exit code and last log lines if the app container stopped."""
    container.reload()
    if container.status not in ("exited", "dead"):
        return
    state = container.attrs.get("State", {})
    oom = " (killed for exceeding its memory limit)" if state.get("OOMKilled") else ""
    raise AppCrashed(
        f"the app container (image {image}) exited with code {state.get('ExitCode')}{oom} during "
        f"start-up.\nLast log lines:\n{logs_tail(container)}\n"
        "Hint: run the image yourself with DATABASE_URL and PORT set to see why, e.g. "
        f"`docker run --rm -e DATABASE_URL=postgresql://... -e PORT=8000 {image}`."
    )

"""The fault proxy as a container on a docker sandbox's network: the local backend's stdlib proxy.

::

    app   --DATABASE_URL--> fault-proxy:15432 (tcp)  --> db:5432
    tests --> 127.0.0.1:<endpoint port> --> fault-proxy:18000 (http) --> app:<PORT>
    tests --> 127.0.0.1:<control port>  --> fault-proxy:8474 (control API, token needed)

The image only has to provide ``python3`` (3.9+): the proxy's own files come from the installed
plugin (:data:`~pytest_livesandbox.faultproxy.SERVER_FILES`), copied into the container's
:data:`~pytest_livesandbox.faultproxy.CODE_DIR` before it starts and run by
:data:`~pytest_livesandbox.faultproxy.CONTAINER_COMMAND` (as the kube pod runs them), so the
container always runs the plugin's version. The default image is
``localhost/livesandbox/fault-proxy:1`` (``scripts/docker-up`` loads it; nothing is pulled); any
other is ``--sandbox-image fault-proxy=python:3.12-slim``. It runs as uid 65532 with every
capability dropped; its ports are published on 127.0.0.1 only.

The control API listens on the container's address (Docker's published port has to reach it),
so the app's containers on the sandbox network reach ``fault-proxy:8474`` too. Each sandbox's
proxy therefore gets a random control token (:func:`new_token`) and refuses control requests
without it (401). The token goes into the container as a file next to the code
(:data:`TOKEN_FILE`, mode 0400, owned by the proxy's uid), copied in with ``put_archive``: never
in an environment variable or argument, so no ``docker inspect`` (of the proxy or the app) and no
process listing shows it, and the app's containers, which share only the network, cannot read
it. The plugin keeps it in :attr:`SandboxInfo.tokens` (redacted from reports like the passwords,
to workers by the signed handoff, to reusing runs by ``secrets.json``)::

    proxy = start_proxy(client, info, network.name, labels, image, app_port=8000)
    proxy.wait(timeout=30)          # the control API answers: routes listen
    proxy.db_host, proxy.db_port    # what the app's DATABASE_URL names
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from ...errors import ProvisionError
from ...faultproxy import CODE_DIR, CONTAINER_COMMAND, DEFAULT_IMAGE, SERVER_FILES
from ...faultproxy.client import EXTRA_KEY, ProxyClient
from ...info import SandboxInfo
from ...postgres.embedded import free_port
from .host import with_free_port
from .postgres import logs_tail
from .resources import COMPONENT

ALIAS = "fault-proxy"
CONTROL_PORT = 8474
#: route name -> the port the proxy listens on in its container
ROUTE_PORTS = {"db": 15432, "app": 18000}
RUN_AS = "65532:65532"
#: the control token's file in the container (in CODE_DIR, readable by RUN_AS only)
TOKEN_FILE = f"{CODE_DIR}/control-token"
IMAGE_HINT = (
    "Hint: the fault proxy needs an image with python3: `scripts/docker-up` loads "
    f"{DEFAULT_IMAGE} here; elsewhere pass --sandbox-image fault-proxy=python:3.12-slim (any "
    "image with python3 works: the proxy's code comes from the plugin), or turn the proxy off "
    "with livesandbox_fault_proxy = false."
)


def new_token() -> str:
    """A fresh control token: 256 random bits, URL-safe (``Authorization: Bearer`` ready)."""
    return secrets.token_urlsafe(32)


def code_archive(token: str = "") -> bytes:
    """The proxy's files (and ``token`` as :data:`TOKEN_FILE`) as a tar for ``put_archive``."""
    buffer = io.BytesIO()
    uid, gid = (int(part) for part in RUN_AS.split(":"))
    files = [(path.name, path.read_bytes(), 0o644) for path in SERVER_FILES]
    if token:
        files.append((TOKEN_FILE.rpartition("/")[2], token.encode(), 0o400))
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(CODE_DIR.lstrip("/"))
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        tar.addfile(folder)
        for name, data, mode in files:
            entry = tarfile.TarInfo(f"{CODE_DIR.lstrip('/')}/{name}")
            entry.size, entry.mode, entry.mtime = len(data), mode, int(time.time())
            entry.uid, entry.gid = uid, gid
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def command(app_port: int | None) -> list[str]:
    """The server's arguments: routes to ``db`` and (with an app) to ``app:<app_port>``.

    The server reads its control token from :data:`TOKEN_FILE` (the path is all that shows in
    ``docker inspect``).
    """
    routes = [f"db={ROUTE_PORTS['db']}=db:5432=tcp"]
    if app_port is not None:
        routes.append(f"app={ROUTE_PORTS['app']}=app:{app_port}=http")
    args = ["--listen-host", "0.0.0.0", "--control-host", "0.0.0.0"]
    args += ["--control-port", str(CONTROL_PORT), "--token-file", TOKEN_FILE]
    for route in routes:
        args += ["--route", route]
    return args


@dataclass
class ContainerProxy:
    """The proxy container of one sandbox and its published ports."""

    container: Any
    control_port: int
    app_port: int | None
    token: str = field(default="", repr=False)
    db_host: str = ALIAS
    db_port: int = ROUTE_PORTS["db"]

    @property
    def endpoint(self) -> str | None:
        """``http://127.0.0.1:<port>``: the app through the proxy (None without an app)."""
        return f"http://127.0.0.1:{self.app_port}" if self.app_port else None

    def wait(self, timeout: float) -> float:
        """Seconds until the control API answers (its routes listen before it does)."""
        began = time.monotonic()
        client = ProxyClient(self.control_port, timeout=1.0, token=self.token)
        while not client.health():
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                code = self.container.attrs.get("State", {}).get("ExitCode")
                raise ProvisionError(
                    f"the fault proxy container exited with code {code} at start-up.\n"
                    f"Last log lines:\n{logs_tail(self.container)}\n{IMAGE_HINT}"
                )
            if time.monotonic() - began > timeout:
                raise ProvisionError(
                    f"the fault proxy's control API (127.0.0.1:{self.control_port}) did not "
                    f"answer within {timeout:g}s.\nLast log lines:\n{logs_tail(self.container)}"
                )
            time.sleep(0.05)
        return time.monotonic() - began

    def record(self, info: SandboxInfo) -> None:
        """Put the proxy into ``info`` (chaos drivers and xdist workers find it there)."""
        info.tokens[EXTRA_KEY] = self.token
        routes = {"db": f"db:5432 via {ALIAS}:{self.db_port}"}
        if self.app_port is not None:
            routes["app"] = f"app via {ALIAS}:{ROUTE_PORTS['app']}"
        info.extra[EXTRA_KEY] = {"control_port": self.control_port, "routes": routes}
        if self.app_port is not None:
            info.extra["proxy_app_port"] = self.app_port


def start_proxy(
    client: docker.DockerClient,
    info: SandboxInfo,
    network: str,
    labels: dict[str, str],
    image: str,
    app_port: int | None,
) -> ContainerProxy:
    """Create the container, copy the proxy's code and token in, start it (not waiting for it).

    The token is in ``info.tokens`` from here on, so errors of the start-up are redacted of it.
    """
    name = f"livesandbox-{info.id}-proxy"
    info.extra["containers"]["proxy"] = name
    token = info.tokens[EXTRA_KEY] = new_token()
    made: list[Any] = []

    def start(control_port: int) -> ContainerProxy:
        app_host_port = free_port() if app_port is not None else None
        ports: dict[str, Any] = {f"{CONTROL_PORT}/tcp": ("127.0.0.1", control_port)}
        if app_host_port is not None:
            ports[f"{ROUTE_PORTS['app']}/tcp"] = ("127.0.0.1", app_host_port)
        networking = {network: client.api.create_endpoint_config(aliases=[ALIAS])}
        container = client.containers.create(
            image,
            entrypoint=list(CONTAINER_COMMAND),
            command=command(app_port),
            name=name,
            labels={**labels, COMPONENT: "proxy"},
            user=RUN_AS,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ports=ports,
            network=network,
            networking_config=networking,
        )
        made.append(container)
        container.put_archive("/", code_archive(token))
        container.start()
        return ContainerProxy(container, control_port, app_host_port, token)

    def remove_failed() -> None:
        if made:
            made.pop().remove(force=True)

    try:
        proxy, _ = with_free_port(start, remove_failed)
    except docker.errors.ImageNotFound:
        raise ProvisionError(
            f"the fault proxy image {image!r} is not on this Docker host.\n{IMAGE_HINT}"
        ) from None
    return proxy

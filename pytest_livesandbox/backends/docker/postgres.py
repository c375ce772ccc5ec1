"""PostgreSQL as a container (testcontainers), for the docker backend.

Any image with the official image's contract works (``POSTGRES_PASSWORD``, ``POSTGRES_USER``,
``POSTGRES_DB``, data in ``/var/lib/postgresql/data``). The superuser and the app role get random
passwords; the app role owns the app database, like the local backend's. The port is published on
127.0.0.1 only, so the test process can connect (``live_db``) and nothing else can::

    db = ContainerPostgres("postgres:15", network=net, name="livesandbox-3f9c-db", labels=labels)
    info = db.start(timeout=30)            # readiness = a real connection as the superuser
    app_dsn = db.dsn_in_network()          # postgresql://app:...@db:5432/app for the app container
"""

from __future__ import annotations

import secrets
from typing import Any

import docker
import docker.errors
import psycopg
from psycopg import sql
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from ...errors import DatabaseStartError
from ...info import DatabaseInfo, SecretUrl
from ...postgres.embedded import ADMIN_USER, APP_DB, APP_USER
from ...readiness import wait_until_ready
from .host import with_free_port

PG_PORT = 5432
NETWORK_ALIAS = "db"
DATA_DIR = "/var/lib/postgresql/data"
# A throwaway database: flushing to disk costs time and buys nothing, since only an OS crash loses
# what is in the page cache. Commits still write the WAL (no synchronous_commit=off), so a chaos
# kill of the container keeps every committed row, as a real server would.
SERVER_ARGS = "-c fsync=off -c full_page_writes=off"
IMAGE_HINT = (
    "Hint: the image must follow the official postgres image's contract (an entrypoint that "
    "takes POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB and server options such as -c x=y); "
    "choose another with --sandbox-image postgres=IMAGE."
)


def logs_tail(container: Any, lines: int = 20) -> str:
    """The last ``lines`` lines of a container's output (``""`` if it is gone)."""
    try:
        data: bytes = container.logs(tail=lines)
    except docker.errors.DockerException:
        return ""
    return data.decode("utf-8", errors="replace").rstrip()


class LoopbackContainer(DockerContainer):
    """A testcontainers container whose published ports bind to 127.0.0.1 only."""

    def with_loopback_port(self, container_port: int, host_port: int) -> LoopbackContainer:
        """Publish ``container_port`` as ``127.0.0.1:host_port``."""
        # docker-py takes (host_ip, host_port); testcontainers' own with_bind_ports binds 0.0.0.0.
        ports: dict[str, Any] = self.ports
        ports[f"{container_port}/tcp"] = ("127.0.0.1", host_port)
        return self


class PostgresReady:
    """Ready when a real connection to the server succeeds; gives up if the container exited."""

    def __init__(self, url: str, container: Any, what: str = "PostgreSQL") -> None:
        self.url = url
        self.container = container
        self.what = what
        self._last = "no answer yet"

    def check(self) -> bool:
        """One connection attempt."""
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            state = self.container.attrs.get("State", {})
            raise DatabaseStartError(
                f"the PostgreSQL container exited with code {state.get('ExitCode')} during "
                f"start-up.\nLast log lines:\n{logs_tail(self.container)}\n{IMAGE_HINT}"
            )
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self._last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            return False
        return True

    def hint(self) -> str:
        """The last connection error and the server's last output."""
        return (
            f"Last attempt: {self._last}.\nLast log lines:\n{logs_tail(self.container)}\n"
            "Hint: raise --sandbox-startup-timeout if the machine is only slow."
        )


class ContainerPostgres:
    """One PostgreSQL container on a sandbox network, its data in a labelled named volume."""

    def __init__(
        self,
        image: str,
        *,
        client: docker.DockerClient,
        network: Network,
        name: str,
        labels: dict[str, str],
    ) -> None:
        self.image = image
        self.client = client
        self.network = network
        self.name = name
        self.labels = {**labels, "livesandbox/component": "db"}
        self.volume = f"{name}-data"
        self.admin_password = secrets.token_hex(16)
        self.app_password = secrets.token_hex(16)
        self.container: LoopbackContainer | None = None
        self.host_port = 0

    def _make(self, host_port: int) -> LoopbackContainer:
        container = (
            LoopbackContainer(self.image, command=SERVER_ARGS)
            .with_envs(
                POSTGRES_USER=ADMIN_USER,
                POSTGRES_PASSWORD=self.admin_password,
                POSTGRES_DB=APP_DB,
            )
            .with_network(self.network)
            .with_network_aliases(NETWORK_ALIAS)
            .with_volume_mapping(self.volume, DATA_DIR, "rw")
            .with_name(self.name)
            .with_kwargs(labels=self.labels)
            .with_loopback_port(PG_PORT, host_port)
        )
        self.container = container
        return container.start()

    def _remove(self) -> None:
        container, self.container = self.container, None
        if container is not None and container._container is not None:
            container._container.remove(force=True, v=True)

    def start(self, timeout: float) -> DatabaseInfo:
        """Start the server, wait for a real connection, create the app role; return its info."""
        self.client.volumes.create(self.volume, labels=self.labels)
        try:
            container, self.host_port = with_free_port(self._make, self._remove)
        except docker.errors.APIError as exc:
            raise DatabaseStartError(
                f"the PostgreSQL container (image {self.image}) could not start: "
                f"{exc.explanation or exc}\n{IMAGE_HINT}"
            ) from None
        admin_url = self._url(ADMIN_USER, self.admin_password, "127.0.0.1", self.host_port)
        wait_until_ready(
            PostgresReady(admin_url, container.get_wrapped_container()),
            timeout=timeout,
            interval=0.05,
            max_interval=0.2,
        )
        self._create_app_role(admin_url)
        return DatabaseInfo(
            host="127.0.0.1",
            port=self.host_port,
            dbname=APP_DB,
            user=APP_USER,
            password=self.app_password,
            admin_user=ADMIN_USER,
            admin_password=self.admin_password,
        )

    def _create_app_role(self, admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_USER), sql.Literal(self.app_password)
                )
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(APP_DB), sql.Identifier(APP_USER)
                )
            )
            conn.execute(
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(APP_USER))
            )

    def dsn_in_network(
        self, application_name: str = "", host: str = NETWORK_ALIAS, port: int = PG_PORT
    ) -> str:
        """The app role's URL as containers on the sandbox network reach the server.

        ``host``/``port`` name another way there (the fault proxy's db route).
        """
        url = self._url(APP_USER, self.app_password, host, port)
        return SecretUrl(f"{url}?application_name={application_name}" if application_name else url)

    @staticmethod
    def _url(user: str, password: str, host: str, port: int) -> str:
        return SecretUrl(f"postgresql://{user}:{password}@{host}:{port}/{APP_DB}")

"""The ``docker`` backend: the app's own image next to a PostgreSQL container (testcontainers).

One sandbox on the daemon::

    network   livesandbox-<id>              private bridge network, nothing else on it
    container livesandbox-<id>-db           PostgreSQL, alias "db", 5432 -> 127.0.0.1:<port>
    volume    livesandbox-<id>-db-data      its data (survives a chaos kill + restart)
    container livesandbox-<id>-proxy        the fault proxy (:mod:`.faultproxy`), alias
                                            "fault-proxy": db route 15432 -> db:5432, app route
                                            (http) 18000 -> 127.0.0.1:<endpoint port>, control
                                            API 8474 -> 127.0.0.1:<port>
    container livesandbox-<id>-app          --sandbox-image app=IMAGE, alias "app"/"backend",
                                            DATABASE_URL=postgresql://app:***@fault-proxy:15432
                                            /app, PORT=<its exposed port> -> 127.0.0.1:<port>

The test client reaches the app through the proxy (``live_url``), so ``latency``,
``network_fault`` and ``http_fault`` act as on the local backend; with ``livesandbox_fault_proxy
= false`` there is no proxy and the app names ``db:5432`` directly. All of them carry our
ownership labels (:mod:`.resources`), so teardown, ``livesandbox
gc`` and ``livesandbox down`` find them after a crash. Configure with::

    pytest --sandbox=docker --sandbox-image app=myapp:dev [--sandbox-image postgres=postgres:16]
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import docker
import docker.errors
import psycopg
from testcontainers.core.network import Network

from ...chaos.clock import clock_problems
from ...chaos.driver import proxy_off_problems
from ...config import SandboxConfig
from ...errors import (
    AppCrashed,
    ClusterUnreachable,
    DatabaseStartError,
    ProvisionError,
    SandboxError,
    TeardownError,
)
from ...faultproxy import proxy_image
from ...images.context import specs_from
from ...images.pipeline import BuildResult, build_local
from ...info import SandboxInfo, default_owner
from ...lease import Lease
from ...locations import state_root
from ...logtail import probe_lines
from ...protocol import ListScope, SandboxHealth, SandboxRecord, own_sandbox_refusals
from ...readiness import HttpReady, wait_until_ready
from ...redaction import redact_error
from ...reusekey import reuse_key
from .app import (
    APP_COMPONENTS,
    DB_COMPONENTS,
    component_images,
    container_port,
    ensure_running,
    window_logs,
)
from .chaos import DockerChaos
from .clock import check_loaded, clock_mount
from .faultproxy import ContainerProxy, start_proxy
from .health import docker_health
from .host import connect, daemon_address, ensure_image, refused_step, with_free_port
from .migrate import migrate
from .postgres import ContainerPostgres, LoopbackContainer, logs_tail
from .resources import (
    COMPONENT,
    ENDPOINT,
    docker_records,
    lease_file,
    remove_sandbox,
    sandbox_labels,
)
from .warm import claim, heal, image_parts, reuse_labels, save_warm, warm_record, write_lease

if TYPE_CHECKING:
    from ...chaos.markers import ChaosPlan

# application_name of the app's database sessions, as the local backend sets it (chaos finds them).
APP_SESSION_NAME = "livesandbox-app"


class DockerBackend:
    """Provision and tear down docker sandboxes (see the module docstring)."""

    name: ClassVar[str] = "docker"
    supported_faults: ClassVar[frozenset[str]] = DockerChaos.kinds
    fault_hints: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._secrets: list[str] = []

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """Every container of the sandbox still there and not exited; the app's restarts."""
        return docker_health(self.client, info)

    @property
    def client(self) -> docker.DockerClient:
        """The daemon connection of this process (made on first use)."""
        if self._client is None:
            self._client = connect()
        return self._client

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Start PostgreSQL and the app; on any failure (or Ctrl-C) remove what was made.

        Errors carry the app's log lines: the generated passwords are scrubbed out of them.
        """
        built: BuildResult | None = None
        if config.build:  # --sandbox-build: in this engine, no push; run the image id
            built = build_local(specs_from(config.build, config.build_arg), self.client)
        app_image, pg_image = component_images((*config.image, *(built.refs() if built else ())))
        ensure_image(self.client, pg_image, role="postgres")
        if app_image is not None:
            ensure_image(self.client, app_image, role="app")
        if config.fault_proxy:
            ensure_image(self.client, proxy_image(config.image), role="fault-proxy")
        workdir = state_root() / sandbox_id
        info = SandboxInfo(
            id=sandbox_id,
            backend=self.name,
            run_id=run_id,
            owner=default_owner(),
            created_at=time.time(),
            workdir=str(workdir),
        )
        info.extra.update(
            docker_host=daemon_address(),
            health_path=config.health_path,
            images={"postgres": pg_image, "app": app_image},
            containers={},
        )
        if built is not None:
            built.record(info)
        try:
            workdir.mkdir(mode=0o755)
            # Leased from the start, with room for the start-up: a run killed now still lapses.
            until = info.created_at + config.startup_timeout + config.lease
            lease_file(info.id).write(Lease("held", run_id, until, pid=os.getpid()))
            self._provision(config, info, app_image, pg_image)
        except docker.errors.DockerException as exc:
            self.teardown(info)
            raise redact_error(refused_step(exc), [*self._secrets, *info.secret_values()]) from None
        except psycopg.Error as exc:
            self.teardown(info)
            raise DatabaseStartError(
                f"could not set up the app role in PostgreSQL ({pg_image}): {exc}"
            ) from None
        except BaseException as exc:
            self.teardown(info)
            redact_error(exc, [*self._secrets, *info.secret_values()])
            raise
        return info

    def _provision(
        self, config: SandboxConfig, info: SandboxInfo, app_image: str | None, pg_image: str
    ) -> None:
        began = time.perf_counter()
        labels = sandbox_labels(
            sandbox_id=info.id,
            run_id=info.run_id,
            owner=info.owner,
            created_at=info.created_at,
            ttl=config.ttl,
            keep=config.keep,
        )
        if config.reuse:  # labels cannot change later: the reuse key goes on at creation
            labels |= reuse_labels(reuse_key(config, self))
        network = Network(docker_network_kw={"labels": labels})
        network.name = f"livesandbox-{info.id}"
        network.create()
        info.extra["network"] = network.name
        db = ContainerPostgres(
            pg_image,
            client=self.client,
            network=network,
            name=f"livesandbox-{info.id}-db",
            labels=labels,
        )
        info.extra["containers"]["db"] = db.name
        info.extra["volumes"] = [db.volume]
        self._secrets = [db.app_password, db.admin_password]
        proxy = None
        if config.fault_proxy:  # starts while PostgreSQL does
            image = proxy_image(config.image)
            port = self._app_port(config, app_image) if app_image is not None else None
            proxy = start_proxy(self.client, info, network.name, labels, image, port)
        info.db = db.start(config.startup_timeout)
        info.timings["db_ready_s"] = round(time.perf_counter() - began, 4)
        if proxy is not None:
            proxy.wait(config.startup_timeout)
            proxy.record(info)
            info.timings["proxy_ready_s"] = round(time.perf_counter() - began, 4)
        if config.migrate_cmd and app_image is not None:
            migrate(self.client, config, info, app_image, network.name, labels, db.dsn_in_network())
        if app_image is not None:
            self._start_app(config, info, app_image, network, labels, db, proxy)
            info.timings["app_ready_s"] = round(time.perf_counter() - began, 4)
        if config.reuse:
            save_warm(info)

    def _app_port(self, config: SandboxConfig, image: str) -> int:
        exposed = self.client.images.get(image).attrs.get("Config", {}).get("ExposedPorts")
        return container_port(dict(config.app_env), exposed)

    def _start_app(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        image: str,
        network: Network,
        labels: dict[str, str],
        db: ContainerPostgres,
        proxy: ContainerProxy | None,
    ) -> None:
        app_env = dict(config.app_env)
        port = self._app_port(config, image)
        via = (proxy.db_host, proxy.db_port) if proxy is not None else ()
        env = {
            **app_env,
            "DATABASE_URL": db.dsn_in_network(APP_SESSION_NAME, *via),
            "PORT": str(port),
            "LIVESANDBOX_ID": info.id,
        }
        clock_env, clock_volumes = clock_mount(config, info)
        env.update(clock_env)
        name = f"livesandbox-{info.id}-app"
        info.extra["containers"]["app"] = name
        info.extra["app_port"] = port
        made: list[LoopbackContainer] = []

        def start(host_port: int) -> LoopbackContainer:
            endpoint = f"http://127.0.0.1:{host_port}"
            container = (
                LoopbackContainer(image)
                .with_envs(**env)
                .with_network(network)
                .with_network_aliases("app", "backend")
                .with_name(name)
                .with_kwargs(labels={**labels, COMPONENT: "app", ENDPOINT: endpoint})
                .with_loopback_port(port, host_port)
            )
            for host_dir, mount in clock_volumes.items():
                container.with_volume_mapping(host_dir, mount["bind"], mount["mode"])
            made.append(container)
            return container.start()

        def remove_failed() -> None:
            if made and made[-1]._container is not None:
                made[-1]._container.remove(force=True, v=True)

        try:
            container, host_port = with_free_port(start, remove_failed)
        except docker.errors.APIError as exc:
            raise AppCrashed(
                f"the app container (image {image}) could not start: {exc.explanation or exc}\n"
                "Hint: check the image's entrypoint/command, e.g. `docker run --rm "
                f"{image}`."
            ) from None
        wrapped = container.get_wrapped_container()
        info.extra["app_direct"] = f"http://127.0.0.1:{host_port}"
        # The tests' client goes through the proxy's app route (readiness too: the whole path).
        info.endpoint = (proxy and proxy.endpoint) or f"http://127.0.0.1:{host_port}"
        probes = probe_lines(config.health_path)  # our probe's access-log lines: not the app's
        check_loaded(config, info, wrapped)  # a clock that cannot move fails here, not later
        wait_until_ready(
            HttpReady(
                info.endpoint + config.health_path,
                alive=lambda: ensure_running(wrapped, image, probes),
                log_tail=lambda: logs_tail(wrapped, drop=probes),
            ),
            timeout=config.startup_timeout,
        )
        # From now on, like a Deployment: an OOM-killed or crashed app comes back by itself
        # (not during start-up, where a crash must surface as AppCrashed with its exit code).
        wrapped.update(restart_policy={"Name": "on-failure"})

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """The containers' output of the window ``[since, until]`` as ``<component>.log``."""
        return window_logs(self.client, info.extra.get("containers") or {}, since, until, dest)

    def teardown(self, info: SandboxInfo) -> None:
        """Remove the containers, network and volumes (found by label), then the folder."""
        try:
            remove_sandbox(self.client, info.id)
        except (docker.errors.DockerException, ClusterUnreachable) as exc:
            raise TeardownError(
                f"could not remove docker sandbox {info.id}: {exc}\n"
                "Hint: once the daemon answers again, `livesandbox gc` (or `livesandbox down "
                f"{info.id}`) removes it."
            ) from None
        finally:
            if info.workdir:
                shutil.rmtree(info.workdir, ignore_errors=True)
            lease_file(info.id).remove()

    # ----------------------------------------------------------------- protocol: config, chaos, CLI

    def check_config(self, config: SandboxConfig) -> list[str]:
        """Settings the docker backend cannot honour."""
        problems = own_sandbox_refusals(config, self.name, "PostgreSQL container")
        for component, _, _ in config.build:
            if component not in (*APP_COMPONENTS, *DB_COMPONENTS):
                problems.append(
                    f"--sandbox-build {component}=...: the docker backend runs the components app "
                    "(alias backend) and postgres (alias db); build app=PATH"
                )
        try:
            app_image, _ = component_images(config.image)
        except ProvisionError as exc:
            problems.append(str(exc))
        else:
            built_app = any(c in APP_COMPONENTS for c, _, _ in config.build)
            if config.migrate_cmd and app_image is None and not built_app:
                problems.append(
                    "--sandbox-migrate-cmd: on docker the migrations run in the app's image; "
                    "give it with --sandbox-image app=IMAGE"
                )
        return problems

    def chaos(self, info: SandboxInfo, owner: str) -> DockerChaos:
        """The docker chaos driver (container stop/start, limits, role limits, kill_db)."""
        return DockerChaos(info, owner=owner)

    def fault_problems(self, plan: ChaosPlan, config: SandboxConfig) -> list[str]:
        """Proxy faults need the fault proxy; a clock fault ``livesandbox_fake_clock``."""
        has_app = any(c in APP_COMPONENTS for c, _ in config.image) or bool(config.build)
        return [
            *proxy_off_problems(plan, config.fault_proxy),
            *clock_problems(plan, config, has_app=has_app),
        ]

    def list_sandboxes(self, scope: ListScope) -> list[SandboxRecord]:
        """Sandboxes found by our labels on containers, networks and volumes."""
        try:
            client = self.client
        except SandboxError:
            if os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock"):
                raise ClusterUnreachable("no Docker daemon answered") from None
            return []  # no daemon configured here: nothing to list
        return [warm_record(rec) for rec in docker_records(client)]

    def reap(self, record: SandboxRecord) -> None:
        """Remove the sandbox's labelled resources and its local folder.

        Not if a run claimed it since it was listed (its lease changed): that run holds it now.
        """
        listed = record.handle[1] if isinstance(record.handle, tuple) else None
        lease = lease_file(record.id)
        with lease.locked():
            if isinstance(record.handle, tuple) and lease.read() != listed:
                return
            remove_sandbox(self.client, record.id)
            shutil.rmtree(state_root() / record.id, ignore_errors=True)
            lease.remove()

    def renew_lease(self, info: SandboxInfo, until: float) -> None:
        """Extend the lease file in the state folder (container labels cannot change)."""
        lease_file(info.id).renew(info.run_id, until)

    def reuse_parts(self, config: SandboxConfig) -> dict[str, str]:
        """The images' ids (a rebuilt ``myapp:dev`` is another sandbox), by name if absent."""
        return image_parts(self.client, component_images(config.image))

    def rolls_builds(self, config: SandboxConfig) -> bool:
        """Never: a changed build is another sandbox."""
        return False

    def claim_warm(
        self, config: SandboxConfig, key: str, run_id: str, until: float
    ) -> SandboxInfo | None:
        """Claim a warm (or abandoned) docker sandbox of ``key`` (compare-and-set on its lease)."""
        return claim(self.client, key, run_id, until)

    def keep_warm(self, info: SandboxInfo, until: float) -> None:
        """Warm for its reuse key (or kept: ``--sandbox-keep``) until ``until``."""
        if info.extra.get("reuse_key"):
            save_warm(info)
        write_lease(info, until)

    def heal(self, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
        """The app container is restarted only when its health check fails."""
        return heal(self.client, info, config)

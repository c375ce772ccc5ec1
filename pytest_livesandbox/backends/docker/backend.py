"""The ``docker`` backend: the app's own image next to a PostgreSQL container (testcontainers).

One sandbox on the daemon::

    network   livesandbox-<id>              private bridge network, nothing else on it
    container livesandbox-<id>-db           PostgreSQL, alias "db", 5432 -> 127.0.0.1:<port>
    volume    livesandbox-<id>-db-data      its data (survives a chaos kill + restart)
    container livesandbox-<id>-app          --sandbox-image app=IMAGE, alias "app"/"backend",
                                            DATABASE_URL=postgresql://app:***@db:5432/app,
                                            PORT=<its exposed port> -> 127.0.0.1:<port>

All of them carry our ownership labels (:mod:`.resources`), so teardown, ``livesandbox
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
from ...chaos.driver import PROXY_KINDS
from ...config import SandboxConfig
from ...errors import (
    AppCrashed,
    ClusterUnreachable,
    DatabaseStartError,
    ProvisionError,
    SandboxError,
    TeardownError,
)
from ...images.context import specs_from
from ...images.pipeline import BuildResult, build_local
from ...info import SandboxInfo, default_owner
from ...lease import Lease
from ...locations import state_root
from ...protocol import ListScope, SandboxHealth, SandboxRecord
from ...readiness import HttpReady, wait_until_ready
from ...redaction import redact_error
from .app import (
    APP_COMPONENTS,
    DB_COMPONENTS,
    component_images,
    container_port,
    ensure_running,
)
from .chaos import DockerChaos
from .clock import check_loaded, clock_mount
from .health import docker_health
from .host import connect, daemon_address, ensure_image, with_free_port
from .migrate import migrate
from .postgres import ContainerPostgres, LoopbackContainer, logs_tail
from .resources import (
    COMPONENT,
    ENDPOINT,
    docker_records,
    docker_sandbox_record,
    lease_file,
    remove_sandbox,
    sandbox_labels,
)

if TYPE_CHECKING:
    from ...chaos.markers import ChaosPlan

# application_name of the app's database sessions, as the local backend sets it (chaos finds them).
APP_SESSION_NAME = "livesandbox-app"


class DockerBackend:
    """Provision and tear down docker sandboxes (see the module docstring)."""

    name: ClassVar[str] = "docker"
    supported_faults: ClassVar[frozenset[str]] = DockerChaos.kinds
    fault_hints: ClassVar[dict[str, str]] = dict.fromkeys(
        PROXY_KINDS,
        "the docker backend has no fault proxy in front of its containers yet; "
        "run this test with --sandbox=local",
    )

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._secrets: list[str] = []

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """Every container of the sandbox still there and not exited (one list call)."""
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
            reason = getattr(exc, "explanation", None) or str(exc)
            hint = ""
            if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").lower() in ("false", "0"):
                hint = (
                    "\nHint: TESTCONTAINERS_RYUK_DISABLED=false makes testcontainers start its "
                    "Ryuk reaper, whose image comes from Docker Hub; unset it (`livesandbox gc` "
                    "is the reaper here)."
                )
            raise redact_error(
                ProvisionError(f"the Docker daemon refused a step of the set-up: {reason}{hint}"),
                self._secrets,
            ) from None
        except psycopg.Error as exc:
            self.teardown(info)
            raise DatabaseStartError(
                f"could not set up the app role in PostgreSQL ({pg_image}): {exc}"
            ) from None
        except BaseException as exc:
            self.teardown(info)
            redact_error(exc, self._secrets)
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
        info.db = db.start(config.startup_timeout)
        info.timings["db_ready_s"] = round(time.perf_counter() - began, 4)
        if config.migrate_cmd and app_image is not None:
            migrate(self.client, config, info, app_image, network.name, labels, db.dsn_in_network())
        if app_image is not None:
            self._start_app(config, info, app_image, network, labels, db)
            info.timings["app_ready_s"] = round(time.perf_counter() - began, 4)

    def _start_app(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        image: str,
        network: Network,
        labels: dict[str, str],
        db: ContainerPostgres,
    ) -> None:
        app_env = dict(config.app_env)
        exposed = self.client.images.get(image).attrs.get("Config", {}).get("ExposedPorts")
        port = container_port(app_env, exposed)
        env = {
            **app_env,
            "DATABASE_URL": db.dsn_in_network(APP_SESSION_NAME),
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
        info.endpoint = f"http://127.0.0.1:{host_port}"
        check_loaded(config, info, wrapped)  # a clock that cannot move fails here, not later
        wait_until_ready(
            HttpReady(
                info.endpoint + config.health_path,
                alive=lambda: ensure_running(wrapped, image),
                log_tail=lambda: logs_tail(wrapped),
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
        written = []
        for component, name in (info.extra.get("containers") or {}).items():
            try:
                container = self.client.containers.get(name)
                data: bytes = container.logs(
                    since=int(since), until=int(until) + 1, timestamps=True
                )
            except (docker.errors.DockerException, ClusterUnreachable):
                continue
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / f"{component}.log"
            path.write_bytes(data)
            written.append(path)
        return written

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
        problems = []
        if config.attach:
            problems.append(
                "--sandbox-attach: the docker backend cannot attach to a sandbox; keep one with "
                "--sandbox-keep, or use --sandbox=kube to attach to a namespace"
            )
        if config.db_dsn:
            problems.append(
                "--sandbox-db-dsn: the docker backend always runs its own PostgreSQL container; "
                "drop the option or use --sandbox=kube"
            )
        for component, _, _ in config.build:
            if component not in (*APP_COMPONENTS, *DB_COMPONENTS):
                problems.append(
                    f"--sandbox-build {component}=...: the docker backend runs the components app "
                    "(alias backend) and postgres (alias db); build app=PATH"
                )
        if config.reuse:
            problems.append("--sandbox-reuse: not on docker yet; use --sandbox=local or kube")
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
        """A clock fault needs ``livesandbox_fake_clock`` on and an app image."""
        has_app = any(c in APP_COMPONENTS for c, _ in config.image) or bool(config.build)
        return clock_problems(plan, config, has_app=has_app)

    def list_sandboxes(self, scope: ListScope) -> list[SandboxRecord]:
        """Sandboxes found by our labels on containers, networks and volumes."""
        try:
            client = self.client
        except SandboxError:
            if os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock"):
                raise ClusterUnreachable("no Docker daemon answered") from None
            return []  # no daemon configured here: nothing to list
        return [docker_sandbox_record(rec) for rec in docker_records(client)]

    def reap(self, record: SandboxRecord) -> None:
        """Remove the sandbox's labelled resources and its local folder."""
        remove_sandbox(self.client, record.id)
        shutil.rmtree(state_root() / record.id, ignore_errors=True)
        lease_file(record.id).remove()

    def renew_lease(self, info: SandboxInfo, until: float) -> None:
        """Extend the lease file in the state folder (container labels cannot change)."""
        lease_file(info.id).renew(info.run_id, until)

    def reuse_parts(self, config: SandboxConfig) -> dict[str, str]:
        """Nothing beyond the options (reuse is refused by :meth:`check_config`)."""
        return {}

    def claim_warm(
        self, config: SandboxConfig, key: str, run_id: str, until: float
    ) -> SandboxInfo | None:
        """No warm docker sandboxes yet."""
        return None

    def keep_warm(self, info: SandboxInfo, until: float) -> None:
        """Kept (``--sandbox-keep``) until ``until``; warm ones do not exist on docker."""
        lease_file(info.id).write(Lease("kept", info.run_id, until))

    def heal(self, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
        """Nothing to heal: docker sandboxes are never reused."""
        return {}

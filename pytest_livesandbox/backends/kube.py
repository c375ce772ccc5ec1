"""The ``kube`` backend: a namespace with PostgreSQL, the app's manifests and a live endpoint.

    pytest --sandbox=kube --sandbox-manifests=k8s/ --sandbox-image backend=myapp:dev

Bring-up, on any cluster the kubeconfig reaches (a production-looking context is refused):

1. namespace ``<prefix>-<id>`` with our labels and ``livesandbox/expires-at``; quota, limit range
   and network policies (:mod:`..kube.namespace`);
2. PostgreSQL (:mod:`..postgres.kube`) and the Secret ``livesandbox-db`` (key ``url``: the app's
   DSN) unless ``--sandbox-db-dsn`` names an external database; reachable from the tests through a
   port-forward on 127.0.0.1, with an app role that is not a superuser;
3. the app's manifests with image overrides; wait for the rollout (failing fast with pod states,
   events and log tails) and for the health path to answer through a port-forward (or the public
   ``--sandbox-url-template`` URL).

Teardown deletes the namespace (only if it carries our labels) and waits until it is gone;
``--sandbox-attach NAMESPACE`` reuses an existing sandbox and never deletes it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from kubernetes.client import ApiException
from psycopg.conninfo import conninfo_to_dict

from ..chaos.database import APP_SESSION_NAME
from ..config import SandboxConfig
from ..errors import (
    ClusterUnreachable,
    ConfigError,
    DatabaseStartError,
    ProvisionError,
    RolloutFailed,
    SandboxError,
    TeardownError,
)
from ..kube import artifacts as kube_artifacts
from ..kube import faultproxy as fp
from ..kube import manifests as mf
from ..kube.client import KubeTarget, connect
from ..kube.names import (
    EXPIRES_AT,
    check_url_template,
    namespace_name,
    render_url_template,
    sandbox_labels,
)
from ..kube.namespace import delete_namespace, guard_rails, namespace_body
from ..kube.portforward import PortForwarder
from ..kube.proxy_setup import NamespaceProxy, with_image_hint
from ..kube.rollout import RolloutReady
from ..kube.route import RouteSpec, check_route_target, parse_route, route_objects, route_status
from ..locations import state_root
from ..postgres import kube as pg
from ..readiness import HttpReady, wait_until_ready
from ..sandbox import DatabaseInfo, SandboxInfo, default_owner

DEMO_MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "demo_app" / "k8s"
# How long a public URL (--sandbox-url-template) may take to answer before the port-forward is used.
PUBLIC_URL_GRACE = 60.0


class KubeBackend:
    """Provision and tear down sandbox namespaces (see the module docstring)."""

    name = "kube"

    def __init__(self) -> None:
        self._targets: dict[str, KubeTarget] = {}
        self._forwarders: dict[str, list[PortForwarder]] = {}
        self._artifact_targets: dict[str, KubeTarget] = {}

    # -- connection -------------------------------------------------------------------------------

    def connect(self, config: SandboxConfig) -> KubeTarget:
        """The cluster to use (the gke backend first fetches credentials)."""
        return connect(
            kubeconfig=config.kubeconfig,
            context=config.context,
            allow_context=config.allow_context,
        )

    # -- provision --------------------------------------------------------------------------------

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Bring the sandbox up; on any failure (or Ctrl-C) remove what was made, then re-raise."""
        info = SandboxInfo(
            id=sandbox_id,
            backend=self.name,
            run_id=run_id,
            owner=default_owner(),
            created_at=time.time(),
        )
        try:
            self._provision(config, info)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.teardown(info)
            if isinstance(exc, Exception) and not isinstance(exc, SandboxError):
                raise api_error(exc, info) from None
            raise
        return info

    def _provision(self, config: SandboxConfig, info: SandboxInfo) -> None:
        began = time.monotonic()
        deadline = began + config.startup_timeout
        if config.url_template:
            check_url_template(config.url_template)
        route = parse_route(config.route)
        if route.kind != "none" and not config.url_template:
            raise ConfigError(
                f"--sandbox-route={route} needs --sandbox-url-template (the host to route), "
                "e.g. --sandbox-url-template='https://sandbox-{id}.dev.example.com'"
            )
        target = self.connect(config)
        self._targets[info.id] = target
        info.extra.update(
            context=target.context,
            server=target.server,
            kubeconfig=target.kubeconfig,
            namespace_prefix=config.namespace_prefix,
        )
        if config.attach:
            self._attach(config, info, target, deadline)
            info.timings["app_ready_s"] = round(time.monotonic() - began, 4)
            return

        namespace = namespace_name(config.namespace_prefix, info.id)
        # Everything that can be wrong with the input is checked before anything is created.
        objs = self._app_objects(config, info, namespace)
        check_route_target(target, route)
        db_image = dict(config.image).get(pg.COMPONENT, pg.DEFAULT_IMAGE)
        sha = git_sha(config.app_cwd)
        body = namespace_body(
            namespace, sandbox_labels(info.id, info.run_id, info.owner, sha), config.ttl
        )
        target.core.create_namespace(body)
        info.namespace = namespace
        info.extra["created_namespace"] = True
        info.extra["expires_at"] = body["metadata"]["annotations"][EXPIRES_AT]
        if sha:
            info.extra["git_sha"] = sha
        mf.create_objects(target.api, namespace, guard_rails())
        info.timings["namespace_s"] = round(time.monotonic() - began, 4)

        app_password = secrets.token_hex(16)
        proxy: NamespaceProxy | None = None
        if config.db_dsn:
            info.db = external_database(config.db_dsn)
            proxy = self._start_proxy(config, target, namespace, objs, None)
            if proxy is not None:
                proxy.wait(target, deadline - time.monotonic())
            app_secret = pg.app_secret(config.db_dsn, **_parts(info.db))
            mf.create_objects(target.api, namespace, [app_secret, *objs])
        else:
            admin_password = secrets.token_hex(16)
            secret, service, statefulset = pg.postgres_objects(db_image, admin_password)
            mf.create_objects(target.api, namespace, [secret, service, statefulset])
            host = target.core.read_namespaced_service(pg.NAME, namespace).spec.cluster_ip
            # The proxy's pod starts while PostgreSQL does; the app's DATABASE_URL names its db
            # Service, so latency and network faults on "db" sit between the app and the server.
            proxy = self._start_proxy(config, target, namespace, objs, f"{host}:{pg.PORT}")
            if proxy is not None and proxy.db_host:
                host = proxy.db_host
            in_cluster = DatabaseInfo(host, pg.PORT, pg.APP_DB, pg.APP_USER, app_password)
            info.db = self._await_postgres(
                target, info, namespace, admin_password, app_password, deadline
            )
            if proxy is not None:
                proxy.wait(target, deadline - time.monotonic())
            # The app starts once its role logs in: no app sees a half-made database, none
            # needs to retry (or crash-loop) through PostgreSQL's start-up.
            # application_name marks the app's sessions (chaos db_connections ends them).
            url = f"{in_cluster.url()}?application_name={APP_SESSION_NAME}"
            app_secret = pg.app_secret(url, **_parts(in_cluster))
            mf.create_objects(target.api, namespace, [app_secret, *objs])
        info.timings["db_ready_s"] = round(time.monotonic() - began, 4)

        self._await_app(config, info, target, namespace, objs, deadline, proxy)
        info.timings["app_ready_s"] = round(time.monotonic() - began, 4)

    def _start_proxy(
        self,
        config: SandboxConfig,
        target: KubeTarget,
        namespace: str,
        objs: list[dict[str, Any]],
        db_upstream: str | None,
    ) -> NamespaceProxy | None:
        """The fault proxy's Services and Deployment (``livesandbox_fault_proxy``, default on)."""
        if not config.fault_proxy:
            return None
        endpoint = mf.endpoint_target(objs)
        app = (endpoint[0], endpoint[1]) if endpoint is not None else None
        image = dict(config.image).get(fp.COMPONENT, fp.DEFAULT_IMAGE)
        return NamespaceProxy.create(target, namespace, image, db_upstream=db_upstream, app=app)

    def _app_objects(
        self, config: SandboxConfig, info: SandboxInfo, namespace: str
    ) -> list[dict[str, Any]]:
        source = config.manifests or DEMO_MANIFESTS
        objs = mf.load_manifests(source)
        url = (
            render_url_template(
                config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
            )
            if config.url_template
            else ""
        )
        values = {
            "LIVESANDBOX_ID": info.id,
            "LIVESANDBOX_NAMESPACE": namespace,
            "LIVESANDBOX_RUN_ID": info.run_id,
            "LIVESANDBOX_URL": url,
            "LIVESANDBOX_HOST": url.split("://", 1)[-1].split("/", 1)[0] if url else "",
        }
        objs = [mf.substitute(obj, values) for obj in objs]
        mf.check_namespaced(objs, namespace)
        app_overrides = [(c, i) for c, i in config.image if c not in (pg.COMPONENT, fp.COMPONENT)]
        used = mf.override_images(objs, app_overrides)
        unknown = [c for c, _ in app_overrides if c not in used]
        if unknown:
            raise ConfigError(
                f"--sandbox-image {', '.join(unknown)}=...: no workload in {source} has that "
                "app.kubernetes.io/component label or name; known: "
                f"{', '.join([*mf.known_components(objs), pg.COMPONENT])}"
            )
        info.extra["manifests"] = str(source)
        return objs

    def _await_postgres(
        self,
        target: KubeTarget,
        info: SandboxInfo,
        namespace: str,
        admin_password: str,
        app_password: str,
        deadline: float,
    ) -> DatabaseInfo:
        forwarder = self._forward(target, info, namespace, pg.SELECTOR, pg.PORT, "db")
        db = DatabaseInfo(
            "127.0.0.1",
            forwarder.port,
            pg.APP_DB,
            pg.APP_USER,
            app_password,
            admin_user=pg.ADMIN_USER,
            admin_password=admin_password,
        )
        probe = PostgresProbe(db.url(admin=True), pg.APP_USER, app_password, pg.APP_DB)
        wait_until_ready(
            RolloutReady(
                target,
                namespace,
                [("StatefulSet", pg.NAME)],
                what=f"PostgreSQL in namespace {namespace}",
                selector=pg.SELECTOR,
                probe=probe.check,
                probe_hint=probe.hint,
                probed=("StatefulSet", pg.NAME),
                secrets=(admin_password, app_password),
            ),
            timeout=max(deadline - time.monotonic(), 0.1),
            interval=0.1,
            max_interval=0.25,
        )
        return db

    def _await_app(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        target: KubeTarget,
        namespace: str,
        objs: list[dict[str, Any]],
        deadline: float,
        proxy: NamespaceProxy | None = None,
    ) -> None:
        endpoint = mf.endpoint_target(objs)
        loads = mf.workloads(objs)
        secrets_ = [s for s in (info.db.password, info.db.admin_password) if s] if info.db else []
        probe: HttpReady | None = None
        probed = None
        if proxy is not None:
            loads.append(proxy.workload)
            # The control API listens on the pod's loopback: reached through the API server only.
            control = self._forward(target, info, namespace, fp.SELECTOR, fp.CONTROL_PORT, "proxy")
            info.extra["fault_proxy"] = {"control_port": control.port, "routes": proxy.routes}
        if endpoint is not None:
            selector, port, probed = endpoint
            if proxy is not None and "app" in proxy.routes:
                # The tests' client reaches the app through the proxy's app route.
                selector, port = fp.SELECTOR, fp.ROUTE_PORTS["app"]
            forwarder = self._forward(target, info, namespace, selector, port, "app")
            info.endpoint = forwarder.url
            info.extra["endpoint_selector"] = selector
            probe = HttpReady(forwarder.url + config.health_path)
        if loads or probe is not None:
            try:
                wait_until_ready(
                    RolloutReady(
                        target,
                        namespace,
                        loads,
                        what=f"the app in namespace {namespace}",
                        probe=probe.check if probe else None,
                        probe_hint=probe.hint if probe else None,
                        probed=probed,
                        secrets=secrets_,
                    ),
                    timeout=max(deadline - time.monotonic(), 0.1),
                    interval=0.1,
                    max_interval=0.25,
                )
            except RolloutFailed as exc:
                raise with_image_hint(exc) from None
        if config.url_template:
            route = parse_route(config.route)
            if route.kind != "none":
                service = _route_backend(objs, proxy)
                if service is None:
                    raise ConfigError(
                        f"--sandbox-route={route}: no Service in the manifests selects the app's "
                        "endpoint; add one (or use --sandbox-route=none)"
                    )
                host = render_url_template(
                    config.url_template, sandbox_id=info.id, namespace=namespace, run_id=""
                )
                host = host.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
                mf.create_objects(target.api, namespace, route_objects(route, host, *service))
                info.extra["route"] = {"spec": str(route), "service": service[0]}
            self._public_endpoint(config, info, namespace, deadline, route, target)

    def _public_endpoint(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        namespace: str,
        deadline: float,
        route: RouteSpec | None = None,
        target: KubeTarget | None = None,
    ) -> None:
        assert config.url_template is not None
        url = render_url_template(
            config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
        )
        grace = min(PUBLIC_URL_GRACE, max(deadline - time.monotonic(), 1.0))
        began = time.monotonic()
        public = HttpReady(url + config.health_path, what="the public URL")
        try:
            wait_until_ready(public, timeout=grace)
        except SandboxError as exc:
            if route is not None and route.kind != "none" and target is not None:
                # We made the route: the URL must answer, else say why (probe + route status).
                raise ProvisionError(
                    f"the public URL {url} did not answer within {grace:.0f}s through "
                    f"--sandbox-route={route}. {public.last_probe()}. Route status: "
                    f"{route_status(target, namespace, route)}. Check that the name resolves "
                    "to the router (DNS), that its certificate covers the host (TLS) and the "
                    "route's conditions above."
                ) from None
            if info.endpoint is None:
                raise
            # DNS or the ingress may lag behind; the port-forward still reaches the app.
            info.extra["public_url"] = url
            info.extra["public_url_error"] = str(exc).splitlines()[0]
            return
        info.timings["public_url_s"] = round(time.monotonic() - began, 4)
        info.extra["port_forward"] = info.endpoint
        info.endpoint = url

    def _attach(
        self, config: SandboxConfig, info: SandboxInfo, target: KubeTarget, deadline: float
    ) -> None:
        namespace = str(config.attach)
        try:
            target.core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ProvisionError(
                    f"--sandbox-attach {namespace}: no such namespace in context "
                    f"{target.context!r}; list sandboxes with `livesandbox ls`"
                ) from None
            raise
        info.namespace = namespace
        info.extra["attached"] = True
        serialize = target.api.sanitize_for_serialization
        services = [
            {"kind": "Service", **serialize(s)}
            for s in target.core.list_namespaced_service(namespace).items
            if s.metadata.name != pg.NAME
        ]
        deployments = [
            {"kind": "Deployment", **serialize(d)}
            for d in target.apps.list_namespaced_deployment(namespace).items
        ]
        info.db = self._attached_database(config, info, target, namespace)
        endpoint = mf.endpoint_target(services + deployments)
        if config.url_template:
            info.endpoint = render_url_template(
                config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
            )
        elif endpoint is not None:
            selector, port, _ = endpoint
            info.endpoint = self._forward(target, info, namespace, selector, port, "app").url
        if info.endpoint:
            wait_until_ready(
                HttpReady(info.endpoint + config.health_path, what=f"the app in {namespace}"),
                timeout=max(deadline - time.monotonic(), 0.1),
            )

    def _attached_database(
        self, config: SandboxConfig, info: SandboxInfo, target: KubeTarget, namespace: str
    ) -> DatabaseInfo | None:
        if config.db_dsn:
            return external_database(config.db_dsn)
        try:
            admin = target.core.read_namespaced_secret(pg.SECRET, namespace)
            app = target.core.read_namespaced_secret(pg.APP_SECRET, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None  # not a sandbox of ours: tests that need the database say so
            raise

        def field(secret: Any, key: str) -> str:
            return base64.b64decode((secret.data or {}).get(key, "")).decode()

        forwarder = self._forward(target, info, namespace, pg.SELECTOR, pg.PORT, "db")
        return DatabaseInfo(
            "127.0.0.1",
            forwarder.port,
            field(app, "dbname") or pg.APP_DB,
            field(app, "user") or pg.APP_USER,
            field(app, "password"),
            admin_user=pg.ADMIN_USER,
            admin_password=field(admin, "POSTGRES_PASSWORD"),
        )

    def _forward(
        self,
        target: KubeTarget,
        info: SandboxInfo,
        namespace: str,
        selector: str,
        port: int | str,
        name: str,
    ) -> PortForwarder:
        forwarder = PortForwarder(target.api.configuration, namespace, selector, port, name=name)
        self._forwarders.setdefault(info.id, []).append(forwarder.start())
        info.extra.setdefault("forwards", {})[name] = forwarder.port
        return forwarder

    # -- artifacts, teardown ----------------------------------------------------------------------

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """The namespace's container logs, events and pod changes in ``[since, until]``."""
        if not info.namespace:
            return []
        target = self._targets.get(info.id) or self._artifact_targets.get(info.id)
        if target is None:
            # An xdist worker: its own client, kept for the next failed test.
            kubeconfig = info.extra.get("kubeconfig")
            target = connect(
                kubeconfig=Path(kubeconfig) if kubeconfig else None,
                context=info.extra.get("context"),
                allow_context=None,
                check_production=False,
            )
            self._artifact_targets[info.id] = target
        return kube_artifacts.collect(target, info.namespace, since, until, dest)

    def teardown(self, info: SandboxInfo) -> None:
        """Stop the port-forwards; delete the namespace we made (never an attached one)."""
        for forwarder in self._forwarders.pop(info.id, []):
            forwarder.close()
        target = self._targets.pop(info.id, None)
        with contextlib.suppress(OSError):
            (state_root() / f"{info.id}.template.lock").unlink(missing_ok=True)
        try:
            if info.extra.get("attached") or not info.extra.get("created_namespace"):
                return
            assert info.namespace is not None
            if target is None:
                kubeconfig = info.extra.get("kubeconfig")
                target = connect(
                    kubeconfig=Path(kubeconfig) if kubeconfig else None,
                    context=info.extra.get("context"),
                    allow_context=None,
                    check_production=False,
                )
            delete_namespace(target.core, info.namespace, sandbox_id=info.id)
        except (SandboxError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise TeardownError(
                f"could not delete namespace {info.namespace} ({type(exc).__name__}: "
                f"{str(exc)[:300]}); it expires at {info.extra.get('expires_at')}: remove it with "
                f"`livesandbox down {info.namespace}` or `livesandbox gc` once the cluster answers"
            ) from None
        finally:
            if target is not None:
                target.close()


def _route_backend(
    objs: list[dict[str, Any]], proxy: NamespaceProxy | None
) -> tuple[str, int] | None:
    """``(Service, port)`` a public route sends traffic to: the proxy's app port, else the app's."""
    if proxy is not None and "app" in proxy.routes:
        return fp.APP_SERVICE, 80
    endpoint = mf.endpoint_target(objs)
    if endpoint is None:
        return None
    wanted = endpoint[0]
    for obj in objs:
        selector = (obj.get("spec") or {}).get("selector") or {}
        if (
            obj.get("kind") == "Service"
            and ",".join(f"{k}={v}" for k, v in sorted(selector.items())) == wanted
        ):
            return str(obj["metadata"]["name"]), int(obj["spec"]["ports"][0]["port"])
    return None


class PostgresProbe:
    """Ready once the admin role logs in through the port-forward and the app role is made."""

    def __init__(self, url: str, app_user: str, app_password: str, dbname: str) -> None:
        self.url = url
        self.app = (app_user, app_password, dbname)
        self.last = "no attempt yet"
        self.done = False

    def check(self) -> bool:
        """One connection attempt; creates the app role on the first success."""
        if self.done:
            return True
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self.last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            return False
        try:
            pg.create_app_role(self.url, *self.app)
        except psycopg.Error as exc:
            raise DatabaseStartError(
                f"could not create the app role in the sandbox's PostgreSQL: {exc}"
            ) from None
        self.done = True
        return True

    def hint(self) -> str:
        """The last connection error."""
        return f"Last connection attempt: {self.last}"


def api_error(exc: Exception, info: SandboxInfo) -> SandboxError:
    """A library error during bring-up as one of ours, with the API server's own words."""
    where = f"{info.extra.get('server', 'the API server')} (context {info.extra.get('context')!r})"
    if isinstance(exc, ApiException):
        match = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', str(exc.body or ""))
        reason = match.group(1) if match else f"{exc.status} {exc.reason}"
        if exc.status in (401, 403):
            return ClusterUnreachable(
                f"{where} refused a request while bringing the sandbox up: {reason}. The "
                "kubeconfig's user needs rights to create namespaces and the objects in them."
            )
        return ProvisionError(f"the Kubernetes API refused a request: {reason}")
    return ClusterUnreachable(
        f"lost the connection to {where} while bringing the sandbox up "
        f"({type(exc).__name__}: {str(exc)[:300]}); is the cluster still running?"
    )


def external_database(dsn: str) -> DatabaseInfo:
    """A :class:`DatabaseInfo` for ``--sandbox-db-dsn`` (its one role serves as admin too)."""
    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:
        raise ConfigError(f"--sandbox-db-dsn is not a valid PostgreSQL DSN: {exc}") from None
    user = str(parts.get("user") or os.environ.get("PGUSER") or "postgres")
    password = str(parts.get("password") or os.environ.get("PGPASSWORD") or "")
    return DatabaseInfo(
        host=str(parts.get("host") or "127.0.0.1"),
        port=int(parts.get("port") or 5432),
        dbname=str(parts.get("dbname") or user),
        user=user,
        password=password,
        admin_user=user,
        admin_password=password,
    )


def _parts(db: DatabaseInfo) -> dict[str, Any]:
    return {
        "host": db.host,
        "port": db.port,
        "dbname": db.dbname,
        "user": db.user,
        "password": db.password,
    }


def git_sha(cwd: Path) -> str | None:
    """The commit under test: from CI variables, else ``git rev-parse HEAD`` in ``cwd``."""
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None

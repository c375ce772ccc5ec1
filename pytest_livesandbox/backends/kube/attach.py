"""``--sandbox-attach NAMESPACE``: use a sandbox somebody else made (a pipeline, Argo CD).

Nothing in an attached namespace is ever deleted; the endpoint and database are port-forwards
(or ``--sandbox-url-template``), the database credentials come from our Secrets when present::

    attach_namespace(config, info, target, deadline, forward=backend._forward)
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiException

from ...config import SandboxConfig
from ...errors import ProvisionError
from ...info import DatabaseInfo, SandboxInfo
from ...readiness import HttpReady, wait_until_ready
from . import manifests as mf
from . import postgres as pg
from .client import KubeTarget
from .names import render_url_template
from .portforward import PortForwarder
from .rollout import RolloutReady

# (target, info, namespace, selector, port, name) -> a started port-forward
Forward = Callable[[KubeTarget, SandboxInfo, str, str, "int | str", str], PortForwarder]


def attach_namespace(
    config: SandboxConfig,
    info: SandboxInfo,
    target: KubeTarget,
    deadline: float,
    forward: Forward,
) -> None:
    """Fill ``info`` from the existing namespace ``config.attach`` (which is never deleted)."""
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
    info.db = attached_database(config, info, target, namespace, forward)
    endpoint = mf.endpoint_target(services + deployments)
    if config.url_template:
        info.endpoint = render_url_template(
            config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
        )
    elif endpoint is not None:
        selector, port, _ = endpoint
        info.endpoint = forward(target, info, namespace, selector, port, "app").url
    if info.endpoint:
        wait_until_ready(
            HttpReady(info.endpoint + config.health_path, what=f"the app in {namespace}"),
            timeout=max(deadline - time.monotonic(), 0.1),
        )


def attached_database(
    config: SandboxConfig,
    info: SandboxInfo,
    target: KubeTarget,
    namespace: str,
    forward: Forward,
) -> DatabaseInfo | None:
    """The sandbox's database: our Secrets' credentials, reached by a port-forward."""
    if config.db_dsn:
        return pg.external_database(config.db_dsn)
    try:
        admin = target.core.read_namespaced_secret(pg.SECRET, namespace)
        app = target.core.read_namespaced_secret(pg.APP_SECRET, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None  # not a sandbox of ours: tests that need the database say so
        raise

    def field(secret: Any, key: str) -> str:
        return base64.b64decode((secret.data or {}).get(key, "")).decode()

    forwarder = forward(target, info, namespace, pg.SELECTOR, pg.PORT, "db")
    return DatabaseInfo(
        "127.0.0.1",
        forwarder.port,
        field(app, "dbname") or pg.APP_DB,
        field(app, "user") or pg.APP_USER,
        field(app, "password"),
        admin_user=pg.ADMIN_USER,
        admin_password=field(admin, "POSTGRES_PASSWORD"),
    )


def await_postgres(
    forward: Forward,
    target: KubeTarget,
    info: SandboxInfo,
    namespace: str,
    admin_password: str,
    app_password: str,
    deadline: float,
) -> DatabaseInfo:
    """Forward to the sandbox's PostgreSQL and wait until it takes the app role's logins."""
    forwarder = forward(target, info, namespace, pg.SELECTOR, pg.PORT, "db")
    db = DatabaseInfo(
        "127.0.0.1",
        forwarder.port,
        pg.APP_DB,
        pg.APP_USER,
        app_password,
        admin_user=pg.ADMIN_USER,
        admin_password=admin_password,
    )
    probe = pg.PostgresProbe(db.url(admin=True), pg.APP_USER, app_password, pg.APP_DB)
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

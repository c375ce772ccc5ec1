"""The database and the app's first start inside a new sandbox namespace, in overlapping order.

Called by :class:`~.backend.KubeBackend` once the namespace exists::

    proxy = own_database(config, info, target, objs, pending, forward, passwords, times)
    proxy = external_database(config, info, target, objs, pending, times)   # --sandbox-db-dsn

With the sandbox's own PostgreSQL the order is the one a hand-written pipeline gets by applying
everything at once, minus its races:

1. PostgreSQL's StatefulSet and the fault proxy's db Service are created; the
   ``livesandbox-db`` Secret at once (the DSN is known before the server runs);
2. as soon as ``--sandbox-build``'s digests are known, the app's workloads are created (or, with
   ``--sandbox-migrate-cmd``, the migration Job): their pods are scheduled, pull the image and
   wait in :mod:`.dbwait`'s init container while PostgreSQL initialises; then the rest of
   the proxy (its pod is Ready long before PostgreSQL);
3. PostgreSQL ready (the app role made, through a port-forward); the init containers let go;
4. with a migration: its Job finishes, then the app's workloads are created.

Timings (offsets since ``began``): ``images_ready_s``, ``app_created_s``, ``db_ready_s``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ...config import SandboxConfig
from ...images.pipeline import BackgroundBuild
from ...info import DatabaseInfo, SandboxInfo
from ...postgres.roles import APP_SESSION_NAME
from . import manifests as mf
from . import postgres as pg
from .attach import Forward, await_postgres
from .client import KubeTarget
from .dbwait import add_db_wait
from .images import use_build
from .migrate import finish_migration, run_migration, start_migration
from .proxy_setup import NamespaceProxy, start_proxy

Times = tuple[float, float]  # (began, deadline) in time.monotonic()


def create_app(
    info: SandboxInfo, target: KubeTarget, objs: list[dict[str, Any]], began: float
) -> None:
    """Create the app's objects; ``app_created_s`` says when."""
    assert info.namespace is not None
    mf.create_objects(target.api, info.namespace, objs)
    info.timings["app_created_s"] = round(time.monotonic() - began, 4)


def own_database(
    config: SandboxConfig,
    info: SandboxInfo,
    target: KubeTarget,
    objs: list[dict[str, Any]],
    pending: BackgroundBuild | None,
    forward: Forward,
    passwords: list[str],
    times: Times,
) -> NamespaceProxy | None:
    """PostgreSQL in the namespace, the app started beside it (see the module docstring)."""
    began, deadline = times
    namespace = str(info.namespace)
    db_image = dict(config.image).get(pg.COMPONENT, pg.DEFAULT_IMAGE)
    app_password, admin_password = secrets.token_hex(16), secrets.token_hex(16)
    passwords += [app_password, admin_password]
    mf.create_objects(target.api, namespace, pg.postgres_objects(db_image, admin_password))
    info.extra["postgres_in_namespace"] = True  # health() watches its pod
    host = target.core.read_namespaced_service(pg.NAME, namespace).spec.cluster_ip
    # The proxy's db Service first: the app's DATABASE_URL names it, so latency and network
    # faults on "db" sit between the app and the server; its pod starts while PostgreSQL does.
    proxy = start_proxy(config, target, namespace, objs, f"{host}:{pg.PORT}")
    if proxy is not None and proxy.db_host:
        host = proxy.db_host
    in_cluster = DatabaseInfo(host, pg.PORT, pg.APP_DB, pg.APP_USER, app_password)
    # application_name marks the app's sessions (chaos db_connections ends them).
    url = f"{in_cluster.url()}?application_name={APP_SESSION_NAME}"
    mf.create_objects(target.api, namespace, [pg.app_secret(url, **pg.db_parts(in_cluster))])
    use_build(pending, info, objs, began)  # built images: their digests in objs
    add_db_wait(objs, db_image)
    migration = None
    if config.migrate_cmd:  # its Job first; the app's pods only once it succeeded
        migration = start_migration(
            target, namespace, objs, config.migrate_cmd, deadline, info.extra,
            wait_image=db_image,
        )  # fmt: skip
    else:
        create_app(info, target, objs, began)
    if proxy is not None:
        proxy.finish(target)
    info.db = await_postgres(
        forward, target, info, namespace, admin_password, app_password, deadline
    )
    info.timings["db_ready_s"] = round(time.monotonic() - began, 4)
    if proxy is not None:
        proxy.wait(target, deadline - time.monotonic())
    if migration is not None:
        info.timings["migrate_s"] = finish_migration(migration, deadline)
        create_app(info, target, objs, began)
    return proxy


def external_database(
    config: SandboxConfig,
    info: SandboxInfo,
    target: KubeTarget,
    objs: list[dict[str, Any]],
    pending: BackgroundBuild | None,
    times: Times,
) -> NamespaceProxy | None:
    """``--sandbox-db-dsn``: the database is up already; the app starts after the migration."""
    assert config.db_dsn is not None
    began, deadline = times
    namespace = str(info.namespace)
    info.db = pg.external_database(config.db_dsn)
    proxy = start_proxy(config, target, namespace, objs, None)
    if proxy is not None:
        proxy.finish(target)
        proxy.wait(target, deadline - time.monotonic())
    use_build(pending, info, objs, began)  # built images: their digests in objs
    mf.create_objects(target.api, namespace, [pg.app_secret(config.db_dsn, **pg.db_parts(info.db))])
    if config.migrate_cmd:  # before any app pod starts: a Job with the app's image
        info.timings["migrate_s"] = run_migration(
            target, namespace, objs, config.migrate_cmd, deadline, info.extra
        )
    create_app(info, target, objs, began)
    info.timings["db_ready_s"] = round(time.monotonic() - began, 4)
    return proxy

"""PostgreSQL inside the sandbox namespace: a one-replica StatefulSet on an ``emptyDir``.

Any image that follows the official ``postgres`` image's contract works (``POSTGRES_PASSWORD``,
``POSTGRES_USER``, ``POSTGRES_DB``, ``PGDATA``, extra arguments passed to the server); choose it
with ``--sandbox-image postgres=IMAGE``. Durability is switched off: the data lives as long as the
test run.

    objs = postgres_objects("postgres:15", admin_password)
    ...                                     # created, port-forwarded, reachable as admin
    create_app_role(admin_url, APP_USER, app_password)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..kube.names import COMPONENT_LABEL, MANAGED_BY_LABEL
from ..kube.namespace import DB_ROLE, ROLE_LABEL
from ..sandbox import MANAGED_BY

COMPONENT = "postgres"
NAME = "livesandbox-postgres"
DEFAULT_IMAGE = "postgres:15"
PORT = 5432
ADMIN_USER = "postgres"
APP_USER = "app"
APP_DB = "app"
SECRET = "livesandbox-postgres"
APP_SECRET = "livesandbox-db"  # the contract with the app's manifests: key ``url``
LABELS = {
    "app.kubernetes.io/name": "postgresql",
    COMPONENT_LABEL: COMPONENT,
    MANAGED_BY_LABEL: MANAGED_BY,
    ROLE_LABEL: DB_ROLE,
}
SELECTOR = f"{COMPONENT_LABEL}={COMPONENT},{ROLE_LABEL}={DB_ROLE}"
# Throwaway data: no fsync, no full-page writes; room for xdist workers and cloned databases.
SERVER_ARGS = (
    "-c", "fsync=off",
    "-c", "synchronous_commit=off",
    "-c", "full_page_writes=off",
    "-c", "max_connections=200",
)  # fmt: skip


def postgres_objects(image: str, admin_password: str) -> list[dict[str, Any]]:
    """Secret (admin password), Service and StatefulSet of the sandbox's PostgreSQL."""
    meta = {"name": NAME, "labels": dict(LABELS)}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "labels": dict(LABELS)},
            "type": "Opaque",
            "stringData": {"POSTGRES_PASSWORD": admin_password},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {COMPONENT_LABEL: COMPONENT, ROLE_LABEL: DB_ROLE},
                "ports": [{"name": "postgres", "port": PORT, "targetPort": PORT}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta,
            "spec": {
                "serviceName": NAME,
                "replicas": 1,
                "selector": {"matchLabels": {COMPONENT_LABEL: COMPONENT, ROLE_LABEL: DB_ROLE}},
                "template": {
                    "metadata": {"labels": dict(LABELS)},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [_container(image)],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
    ]


def _container(image: str) -> dict[str, Any]:
    return {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(SERVER_ARGS),
        "env": [
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "POSTGRES_PASSWORD"}},
            },
            {"name": "POSTGRES_USER", "value": ADMIN_USER},
            {"name": "POSTGRES_DB", "value": APP_DB},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": PORT}],
        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }


def app_secret(
    url: str, *, host: str, port: int, dbname: str, user: str, password: str
) -> dict[str, Any]:
    """Secret ``livesandbox-db``: the app's ``DATABASE_URL`` (key ``url``) and its parts."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": APP_SECRET, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "type": "Opaque",
        "stringData": {
            "url": url,
            "host": host,
            "port": str(port),
            "dbname": dbname,
            "user": user,
            "password": password,
        },
    }


def create_app_role(admin_url: str, user: str, password: str, dbname: str) -> None:
    """The app's own login role (not a superuser), owner of the app database."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(dbname), sql.Identifier(user)
            )
        )

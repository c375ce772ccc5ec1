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

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ...errors import ConfigError, DatabaseStartError
from ...info import MANAGED_BY, DatabaseInfo
from .names import COMPONENT_LABEL, MANAGED_BY_LABEL
from .namespace import DB_ROLE, ROLE_LABEL

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
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self.last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            return False
        try:
            create_app_role(self.url, *self.app)
        except psycopg.Error as exc:
            raise DatabaseStartError(
                f"could not create the app role in the sandbox's PostgreSQL: {exc}"
            ) from None
        self.done = True
        return True

    def hint(self) -> str:
        """The last connection error."""
        return f"Last connection attempt: {self.last}"


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


def db_parts(db: DatabaseInfo) -> dict[str, Any]:
    """The app role's connection fields, for :func:`app_secret`."""
    return {
        "host": db.host,
        "port": db.port,
        "dbname": db.dbname,
        "user": db.user,
        "password": db.password,
    }

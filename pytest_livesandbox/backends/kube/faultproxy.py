"""The fault proxy inside a kube/gke sandbox namespace: one Deployment, its code and its Services.

The same stdlib proxy the local backend runs (``faultproxy/server.py``): the installed plugin's
files (:data:`~pytest_livesandbox.faultproxy.SERVER_FILES`) in a ConfigMap
``livesandbox-fault-proxy-code``, mounted read-only at
:data:`~pytest_livesandbox.faultproxy.CODE_DIR` and run by
:data:`~pytest_livesandbox.faultproxy.CONTAINER_COMMAND` (as the docker container runs them). So
the proxy always matches the plugin, and the image only has to provide ``python3`` (3.9+): the
default ``localhost/livesandbox/fault-proxy:1`` (``cluster/build-images``), on GKE e.g.
``--sandbox-image fault-proxy=python:3.12-slim``. The code's digest is a pod template annotation,
so other code rolls the pod::

    app --DATABASE_URL--> Service livesandbox-proxy-db:5432 --> proxy :15432 --> PostgreSQL
    tests --port-forward--> proxy pod :18000 (http) --> livesandbox-proxy-app-upstream --> app
    tests --port-forward--> proxy pod 127.0.0.1:8474 (control API, never behind a Service)

Routes are given on the command line (``--route NAME=PORT=HOST:PORT``, upstreams by ClusterIP so no
lookup sits on the data path) and open before the pod is Ready. The pod passes the ``restricted``
Pod Security Standard (non-root, no privilege escalation, every capability dropped, RuntimeDefault
seccomp, read-only root filesystem, a ConfigMap volume only): legal on GKE Autopilot::

    code = server_code()
    objs = [code_configmap(code),
            deployment(image, {"db": "10.96.3.4:5432", "app": "10.96.7.1:80"}, code_digest(code))]
"""

from __future__ import annotations

from typing import Any

from ...faultproxy import CODE_DIR, CONTAINER_COMMAND, code_digest, server_code
from ...info import MANAGED_BY
from .names import COMPONENT_LABEL, MANAGED_BY_LABEL

COMPONENT = "fault-proxy"
NAME = "livesandbox-fault-proxy"
CONTROL_PORT = 8474
#: accepts and closes, nothing else: the readiness probe's port (a route's would go upstream)
READY_PORT = 8475
#: route name -> the port the proxy listens on for it in the pod
ROUTE_PORTS = {"db": 15432, "app": 18000}
#: route name -> its protocol: the app route parses HTTP/1.1 (``http_fault``, test scopes)
ROUTE_PROTOCOLS = {"db": "tcp", "app": "http"}
DB_SERVICE = "livesandbox-proxy-db"
#: our own Service in front of the app's pods: the app route's upstream
APP_UPSTREAM_SERVICE = "livesandbox-proxy-app-upstream"
APP_UPSTREAM_PORT = 80
LABELS = {COMPONENT_LABEL: COMPONENT, MANAGED_BY_LABEL: MANAGED_BY}
SELECTOR = f"{COMPONENT_LABEL}={COMPONENT},{MANAGED_BY_LABEL}={MANAGED_BY}"
RUN_AS = 65532  # an unprivileged user (the image need not know it)
#: the ConfigMap holding the plugin's proxy files, and the pod template annotation of their digest
CODE_CONFIGMAP = "livesandbox-fault-proxy-code"
CODE_ANNOTATION = "livesandbox/fault-proxy-code"

#: securityContexts that pass the ``restricted`` Pod Security Standard
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(LABELS)}


def db_service() -> dict[str, Any]:
    """``livesandbox-proxy-db``: what the app's ``DATABASE_URL`` names instead of PostgreSQL."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(DB_SERVICE),
        "spec": {
            "selector": {COMPONENT_LABEL: COMPONENT},
            "ports": [{"name": "postgres", "port": 5432, "targetPort": ROUTE_PORTS["db"]}],
        },
    }


APP_SERVICE = "livesandbox-proxy-app"


def app_service() -> dict[str, Any]:
    """``livesandbox-proxy-app``: the app through the proxy (a public route's backend)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(APP_SERVICE),
        "spec": {
            "selector": {COMPONENT_LABEL: COMPONENT},
            "ports": [{"name": "http", "port": 80, "targetPort": ROUTE_PORTS["app"]}],
        },
    }


def app_upstream_service(selector: str, port: int | str) -> dict[str, Any]:
    """A Service for the app's pods (``selector`` ``k=v,...``, container ``port``)."""
    labels = dict(part.split("=", 1) for part in selector.split(",") if part)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(APP_UPSTREAM_SERVICE),
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": APP_UPSTREAM_PORT, "targetPort": port}],
        },
    }


def code_configmap(code: dict[str, str]) -> dict[str, Any]:
    """The ConfigMap of the proxy's files (``server_code()``; ~50 KB of the 1 MiB allowed)."""
    meta = _meta(CODE_CONFIGMAP)
    meta["annotations"] = {CODE_ANNOTATION: code_digest(code)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(code)}


def route_args(upstreams: dict[str, str]) -> list[str]:
    """``--route`` arguments for ``{"db": "HOST:PORT", ...}`` (known route names only)."""
    unknown = sorted(set(upstreams) - set(ROUTE_PORTS))
    if unknown:
        raise ValueError(f"unknown fault-proxy routes {unknown}; known: {sorted(ROUTE_PORTS)}")
    args = []
    for name, upstream in sorted(upstreams.items()):
        args += ["--route", f"{name}={ROUTE_PORTS[name]}={upstream}={ROUTE_PROTOCOLS[name]}"]
    return args


def deployment(image: str, upstreams: dict[str, str], digest: str | None = None) -> dict[str, Any]:
    """The proxy's Deployment: one replica, Ready once every route listens (:data:`READY_PORT`).

    It runs :data:`CODE_CONFIGMAP`'s files with the image's ``python3``; ``digest`` (of those
    files, computed when not given) is in the pod template, so other code rolls the pod.
    """
    if digest is None:
        digest = code_digest(server_code())
    ports = [{"name": f"route-{n}", "containerPort": ROUTE_PORTS[n]} for n in sorted(upstreams)]
    ports.append({"name": "ready", "containerPort": READY_PORT})
    container = {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(CONTAINER_COMMAND),
        "args": [
            "--listen-host",
            "0.0.0.0",
            "--control-port",
            str(CONTROL_PORT),
            "--ready-port",
            str(READY_PORT),
            *route_args(upstreams),
        ],
        "ports": ports,
        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR, "readOnly": True}],
        "readinessProbe": {
            "tcpSocket": {"port": READY_PORT},
            "periodSeconds": 1,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "20m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
        "securityContext": dict(RESTRICTED_CONTAINER),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {COMPONENT_LABEL: COMPONENT}},
            "template": {
                "metadata": {
                    "labels": dict(LABELS),
                    "annotations": {CODE_ANNOTATION: digest},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": dict(RESTRICTED_POD),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "code",
                            "configMap": {"name": CODE_CONFIGMAP, "defaultMode": 0o444},
                        }
                    ],
                },
            },
        },
    }

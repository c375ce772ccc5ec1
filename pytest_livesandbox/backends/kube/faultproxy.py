"""The fault proxy inside a kube/gke sandbox namespace: one Deployment and its Services.

The same stdlib proxy the local backend runs (``faultproxy/server.py``), in its own image
(``cluster/images/fault-proxy.recipe``; ``--sandbox-image fault-proxy=REF`` on other clusters)::

    app --DATABASE_URL--> Service livesandbox-proxy-db:5432 --> proxy :15432 --> PostgreSQL
    tests --port-forward--> proxy pod :18000 (http) --> livesandbox-proxy-app-upstream --> app
    tests --port-forward--> proxy pod 127.0.0.1:8474 (control API, never behind a Service)

Routes are given on the command line (``--route NAME=PORT=HOST:PORT``, upstreams by ClusterIP so no
lookup sits on the data path) and open before the pod is Ready. The pod passes the ``restricted``
Pod Security Standard (non-root, no privilege escalation, every capability dropped, RuntimeDefault
seccomp, read-only root filesystem): legal on GKE Autopilot::

    objs = proxy_objects(image, {"db": "10.96.3.4:5432", "app": "10.96.7.1:80"})
"""

from __future__ import annotations

from typing import Any

from ...info import MANAGED_BY
from .names import COMPONENT_LABEL, MANAGED_BY_LABEL

COMPONENT = "fault-proxy"
NAME = "livesandbox-fault-proxy"
DEFAULT_IMAGE = "localhost/livesandbox/fault-proxy:1"
CONTROL_PORT = 8474
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
RUN_AS = 65532  # the image's unprivileged user

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


def route_args(upstreams: dict[str, str]) -> list[str]:
    """``--route`` arguments for ``{"db": "HOST:PORT", ...}`` (known route names only)."""
    unknown = sorted(set(upstreams) - set(ROUTE_PORTS))
    if unknown:
        raise ValueError(f"unknown fault-proxy routes {unknown}; known: {sorted(ROUTE_PORTS)}")
    args = []
    for name, upstream in sorted(upstreams.items()):
        args += ["--route", f"{name}={ROUTE_PORTS[name]}={upstream}={ROUTE_PROTOCOLS[name]}"]
    return args


def deployment(image: str, upstreams: dict[str, str]) -> dict[str, Any]:
    """The proxy's Deployment: one replica, Ready once every route's port accepts connections."""
    ports = [{"name": f"route-{n}", "containerPort": ROUTE_PORTS[n]} for n in sorted(upstreams)]
    probe_port = ROUTE_PORTS[sorted(upstreams)[0]] if upstreams else CONTROL_PORT
    container = {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--listen-host",
            "0.0.0.0",
            "--control-port",
            str(CONTROL_PORT),
            *route_args(upstreams),
        ],
        "ports": ports,
        "readinessProbe": {
            "tcpSocket": {"port": probe_port},
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
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": dict(RESTRICTED_POD),
                    "containers": [container],
                },
            },
        },
    }

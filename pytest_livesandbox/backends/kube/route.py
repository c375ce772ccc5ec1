r"""The public route of a kube/gke sandbox (``--sandbox-route``): an HTTPRoute or an Ingress.

    pytest --sandbox=gke --sandbox-url-template='https://sandbox-{id}.dev.example.com' \\
        --sandbox-route=gateway:infra/public        # Gateway API: HTTPRoute on that Gateway
    ... --sandbox-route=ingress:nginx               # an Ingress of that IngressClass
    ... --sandbox-route=none                        # default: someone else routes the URL

The route lives in the sandbox namespace (so it goes with it), sends the templated host to a
Service (the fault proxy's app port when the proxy runs, else the app's), and is awaited until
the URL answers over TLS. Input is checked before anything is made: a Gateway or IngressClass
that does not exist is a :class:`~..errors.ConfigError` naming the ones that do::

    spec = parse_route("gateway:livesandbox-router/dev")
    check_route_target(target, spec)
    objs = route_objects(spec, "sandbox-abc.dev.livesandbox.test", "backend", 80)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s
from kubernetes.client import ApiException

from ...errors import ConfigError, ProvisionError
from ...info import MANAGED_BY
from . import faultproxy as fp
from . import manifests as mf
from .client import KubeTarget
from .names import MANAGED_BY_LABEL

if TYPE_CHECKING:
    from .proxy_setup import NamespaceProxy

NAME = "livesandbox-public"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
FORMS = "gateway:NAMESPACE/NAME, ingress:CLASS or none"


@dataclass(frozen=True)
class RouteSpec:
    """What ``--sandbox-route`` asked for."""

    kind: str  # "gateway", "ingress" or "none"
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "gateway":
            return f"gateway:{self.namespace}/{self.name}"
        return f"ingress:{self.name}" if self.kind == "ingress" else "none"


def parse_route(text: str | None, url_template: str | None = "") -> RouteSpec:
    """Parse ``--sandbox-route`` (a route needs a URL template: pass ``None`` when there is none).

    >>> parse_route("gateway:infra/public")
    RouteSpec(kind='gateway', namespace='infra', name='public')
    >>> parse_route("ingress:nginx").name
    'nginx'
    """
    value = (text or "none").strip()
    if value == "none":
        return RouteSpec("none")
    spec = _parse(value)
    if url_template is None:
        raise ConfigError(
            f"--sandbox-route={spec} needs --sandbox-url-template (the host to route), "
            "e.g. --sandbox-url-template='https://sandbox-{id}.dev.example.com'"
        )
    return spec


def _parse(value: str) -> RouteSpec:
    kind, sep, rest = value.partition(":")
    if kind == "gateway" and sep:
        namespace, slash, name = rest.partition("/")
        if slash and namespace and name and "/" not in name:
            return RouteSpec("gateway", namespace, name)
    if kind == "ingress" and sep and rest and "/" not in rest:
        return RouteSpec("ingress", name=rest)
    raise ConfigError(f"--sandbox-route={value!r}: expected {FORMS}")


def check_route_target(target: KubeTarget, spec: RouteSpec) -> None:
    """The Gateway or IngressClass exists (else a readable error listing what does)."""
    if spec.kind == "gateway":
        custom: Any = k8s.CustomObjectsApi(target.api)
        try:
            custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, spec.namespace, "gateways", spec.name
            )
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            found = custom.list_cluster_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, "gateways")
            names = sorted(
                f"{g['metadata']['namespace']}/{g['metadata']['name']}" for g in found["items"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            raise ConfigError(
                f"--sandbox-route={spec}: this cluster has no Gateway API "
                f"({GATEWAY_GROUP} is not served); use ingress:CLASS or none"
            ) from None
        raise ConfigError(
            f"--sandbox-route={spec}: no Gateway {spec.name!r} in namespace {spec.namespace!r} "
            f"(context {target.context!r}); Gateways there: {', '.join(names) or 'none'}"
        )
    if spec.kind == "ingress":
        networking: Any = k8s.NetworkingV1Api(target.api)
        classes = networking.list_ingress_class().items
        names = sorted(c.metadata.name for c in classes)
        if spec.name not in names:
            raise ConfigError(
                f"--sandbox-route={spec}: no IngressClass {spec.name!r} (context "
                f"{target.context!r}); IngressClasses: {', '.join(names) or 'none'}"
            )


def route_objects(spec: RouteSpec, host: str, service: str, port: int) -> list[dict[str, Any]]:
    """The HTTPRoute or Ingress sending ``host`` to ``service:port`` (none for ``none``)."""
    meta = {"name": NAME, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}
    if spec.kind == "gateway":
        return [
            {
                "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
                "kind": "HTTPRoute",
                "metadata": meta,
                "spec": {
                    "parentRefs": [
                        {
                            "group": GATEWAY_GROUP,
                            "kind": "Gateway",
                            "namespace": spec.namespace,
                            "name": spec.name,
                        }
                    ],
                    "hostnames": [host],
                    "rules": [{"backendRefs": [{"name": service, "port": port}]}],
                },
            }
        ]
    if spec.kind == "ingress":
        backend = {"service": {"name": service, "port": {"number": port}}}
        return [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": meta,
                "spec": {
                    "ingressClassName": spec.name,
                    # No secretName: the controller's default certificate serves the host.
                    "tls": [{"hosts": [host]}],
                    "rules": [
                        {
                            "host": host,
                            "http": {
                                "paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]
                            },
                        }
                    ],
                },
            }
        ]
    return []


def route_status(target: KubeTarget, namespace: str, spec: RouteSpec) -> str:
    """The route's status conditions (HTTPRoute) or load balancer (Ingress), one line."""
    try:
        if spec.kind == "gateway":
            custom: Any = k8s.CustomObjectsApi(target.api)
            obj = custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", NAME
            )
            parts = []
            for parent in (obj.get("status") or {}).get("parents") or []:
                for cond in parent.get("conditions") or []:
                    parts.append(
                        f"{cond['type']}={cond['status']} ({cond.get('reason')}: "
                        f"{cond.get('message', '')})"
                    )
            return "; ".join(parts) or "no status from any Gateway controller yet"
        if spec.kind == "ingress":
            networking: Any = k8s.NetworkingV1Api(target.api)
            ing = networking.read_namespaced_ingress(NAME, namespace)
            lb = ing.status.load_balancer.ingress if ing.status.load_balancer else None
            addresses = [str(i.ip or i.hostname) for i in lb or []]
            return f"load balancer: {', '.join(addresses) or 'none assigned yet'}"
    except ApiException as exc:
        return f"status not readable: {exc.status} {exc.reason}"
    return ""


def route_backend(
    objs: list[dict[str, Any]], proxy: NamespaceProxy | None
) -> tuple[str, int] | None:
    """``(Service, port)`` a public route sends traffic to: the proxy's app port, else the app's."""
    if proxy is not None and "app" in proxy.routes:
        return fp.APP_SERVICE, 80
    endpoint = mf.endpoint_target(objs)
    if endpoint is None:
        return None
    for obj in objs:
        selector = (obj.get("spec") or {}).get("selector") or {}
        joined = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        if obj.get("kind") == "Service" and joined == endpoint[0]:
            return str(obj["metadata"]["name"]), int(obj["spec"]["ports"][0]["port"])
    return None


def create_route(
    target: KubeTarget,
    namespace: str,
    spec: RouteSpec,
    url: str,
    objs: list[dict[str, Any]],
    proxy: NamespaceProxy | None,
) -> dict[str, str]:
    """Make the route for ``url``'s host in ``namespace``; returns what the sandbox info keeps."""
    service = route_backend(objs, proxy)
    if service is None:
        raise ConfigError(
            f"--sandbox-route={spec}: no Service in the manifests selects the app's endpoint; "
            "add one (or use --sandbox-route=none)"
        )
    host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    mf.create_objects(target.api, namespace, route_objects(spec, host, *service))
    return {"spec": str(spec), "host": host, "service": service[0]}


def route_error(
    url: str, grace: float, probe: str, spec: RouteSpec, target: KubeTarget, namespace: str
) -> ProvisionError:
    """We made the route, so the URL must answer: say why not (the probe and the route status)."""
    return ProvisionError(
        f"the public URL {url} did not answer within {grace:.0f}s through --sandbox-route="
        f"{spec}. {probe}. Route status: {route_status(target, namespace, spec)}. Check that "
        "the name resolves to the router (DNS), that its certificate covers the host (TLS) and "
        "the route's conditions above."
    )

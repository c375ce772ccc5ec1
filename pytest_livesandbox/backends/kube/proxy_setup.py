"""Put the fault proxy (:mod:`.faultproxy`) into a sandbox namespace, in front of the app and DB.

Called by the kube backend while PostgreSQL starts, so the proxy's pod comes up in parallel::

    proxy = NamespaceProxy.create(target, ns, image, db_upstream="10.96.3.4:5432",
                                  app=("app.kubernetes.io/component=backend", 8000))
    proxy.db_host        # ClusterIP the app's DATABASE_URL names (None without a db route)
    ...                  # the app's objects
    proxy.finish(target) # code ConfigMap, app route Services, Deployment
    proxy.workload       # ("Deployment", "livesandbox-fault-proxy"): awaited with the app

The pod runs the plugin's own proxy files from a ConfigMap with the image's ``python3``; an image
without python3 (for the proxy, or for the clock sidecar that uses the same image) is one
``RolloutFailed`` naming the image and the fix (:func:`with_image_hint`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...config import SandboxConfig
from ...errors import AppCrashed, RolloutFailed
from ...faultproxy import code_digest, proxy_image, server_code
from . import faultproxy as fp
from . import manifests as mf
from .client import KubeTarget
from .clock import SIDECAR as CLOCK_SIDECAR

# The argocd deployer's app route selects nothing until the sync tells which pods serve the app.
PENDING_SELECTOR = "livesandbox/app=pending"
PENDING_PORT = 8000
IMAGE_HINT = (
    "Hint: the fault proxy's image must be on the node or pullable: on this repository's cluster "
    "`bash cluster/build-images fault-proxy`; elsewhere any image with python3 works (the "
    "proxy's code comes from the plugin), e.g. --sandbox-image fault-proxy=python:3.12-slim; or "
    "run without chaos proxying (livesandbox_fault_proxy = false)."
)
# The runtime's words for a command that is not in the image (runc; crun; older runc).
_NO_PYTHON = re.compile(
    r'(?:exec: )?"?python3"?:? (?:executable file not found in \$PATH'
    r"|stat python3: no such file or directory)"
    r"|executable file `python3` not found[^\n]*"
)
_NO_PYTHON_FIX = {
    fp.COMPONENT: (
        "the fault proxy runs the plugin's own code (ConfigMap {cm}) with the image's python3.\n"
        "Hint: pass --sandbox-image fault-proxy=IMAGE with python3 3.9+ (any such image works, "
        "e.g. python:3.12-slim), or run without the proxy (livesandbox_fault_proxy = false)."
    ),
    CLOCK_SIDECAR: (
        "the app pods' clock sidecar {side} uses the fault proxy's image and needs python3 and "
        "sh.\nHint: pass --sandbox-image fault-proxy=IMAGE with python3 3.9+ and sh (e.g. "
        "python:3.12-slim), or run without the fake clock (livesandbox_fake_clock = off)."
    ),
}


@dataclass
class NamespaceProxy:
    """The proxy objects made in one namespace."""

    namespace: str
    image: str
    routes: dict[str, str] = field(default_factory=dict)
    db_host: str | None = None
    workload: tuple[str, str] = ("Deployment", fp.NAME)
    app: tuple[str, int | str] | None = None  # (selector, port) of the app route's upstream

    @classmethod
    def create(
        cls,
        target: KubeTarget,
        namespace: str,
        image: str,
        *,
        db_upstream: str | None,
        app: tuple[str, int | str] | None,
    ) -> NamespaceProxy:
        """The db Service (the app's ``DATABASE_URL`` names it); the rest in :meth:`finish`.

        The app's objects are made in between, so they need not wait for the proxy's.
        """
        proxy = cls(namespace, image, app=app)
        if db_upstream is not None:
            proxy.routes["db"] = db_upstream
            svc = target.core.create_namespaced_service(namespace, fp.db_service())
            proxy.db_host = str(svc.spec.cluster_ip)
        return proxy

    def finish(self, target: KubeTarget) -> None:
        """The code ConfigMap, the app route's Services (its upstream) and the Deployment.

        Its pod is up well before PostgreSQL, which the app's pods wait for anyway.
        """
        core: Any = target.core
        code = server_code()  # the plugin's proxy, mounted into the pod: any python3 image runs it
        core.create_namespaced_config_map(self.namespace, fp.code_configmap(code))
        if self.app is not None:
            svc = core.create_namespaced_service(self.namespace, fp.app_upstream_service(*self.app))
            self.routes["app"] = f"{svc.spec.cluster_ip}:{fp.APP_UPSTREAM_PORT}"
            core.create_namespaced_service(self.namespace, fp.app_service())
        body = fp.deployment(self.image, self.routes, code_digest(code))
        target.apps.create_namespaced_deployment(self.namespace, body)

    def wait(self, target: KubeTarget, timeout: float) -> None:
        """Until the proxy's pod is Ready (its routes listen): the app's first connect works.

        Without this the app could start first, fail to reach the database through a proxy
        that is not there yet, and sit in its reconnect backoff (seen: a minute).
        """
        from ...readiness import wait_until_ready
        from .rollout import RolloutReady

        try:
            wait_until_ready(
                RolloutReady(
                    target,
                    self.namespace,
                    [self.workload],
                    what=f"the fault proxy in namespace {self.namespace}",
                    selector=fp.SELECTOR,
                ),
                timeout=max(timeout, 0.1),
                interval=0.1,
                max_interval=0.25,
            )
        except (RolloutFailed, AppCrashed) as exc:
            raise with_image_hint(exc, self.image) from None


def start_proxy(
    config: SandboxConfig,
    target: KubeTarget,
    namespace: str,
    objs: list[dict[str, Any]],
    db_upstream: str | None,
) -> NamespaceProxy | None:
    """The proxy in front of the app's endpoint (and ``db_upstream``), if the config wants one.

    ``livesandbox_fault_proxy`` (default on); ``--sandbox-image fault-proxy=REF`` picks the image.
    """
    if not config.fault_proxy:
        return None
    endpoint = mf.endpoint_target(objs)
    app = (endpoint[0], endpoint[1]) if endpoint is not None else None
    if config.deployer == "argocd":  # the app's Service is known after the sync: point_app_route
        app = (PENDING_SELECTOR, PENDING_PORT)
    image = proxy_image(config.image)
    return NamespaceProxy.create(target, namespace, image, db_upstream=db_upstream, app=app)


def point_app_route(
    target: KubeTarget, namespace: str, proxy: NamespaceProxy | None, objs: list[dict[str, Any]]
) -> None:
    """Point the proxy's pending app route at the synced app's pods (the proxy keeps running).

    Its upstream Service gets the endpoint's selector (the pending key removed) and target port.
    """
    endpoint = mf.endpoint_target(objs)
    if proxy is None or "app" not in proxy.routes or endpoint is None:
        return
    spec = fp.app_upstream_service(endpoint[0], endpoint[1])["spec"]
    pending_key = PENDING_SELECTOR.split("=", 1)[0]
    spec["selector"] = {pending_key: None, **spec["selector"]}
    target.core.patch_namespaced_service(fp.APP_UPSTREAM_SERVICE, namespace, {"spec": spec})


def with_image_hint(exc: RolloutFailed | AppCrashed, image: str) -> RolloutFailed | AppCrashed:
    """A rollout error of the proxy's pod (or the clock sidecar's), with how to provide its image.

    ``image`` is the fault proxy's (:func:`~pytest_livesandbox.faultproxy.proxy_image`). An image
    without python3 gets its own short error instead of the crash report::

        RolloutFailed: the fault proxy in namespace sandbox-3f9c cannot start: the fault proxy's
        image 'postgres:15' has no python3 (container fault-proxy: exec: "python3": executable
        file not found in $PATH): the fault proxy runs the plugin's own code ... Hint: ...
    """
    text = str(exc)
    what, _, first = text.split("\n", 1)[0].rpartition(" cannot start: ")
    found = _NO_PYTHON.search(text)
    for container, fix in _NO_PYTHON_FIX.items():
        if found and first.startswith(f"container {container}"):
            return RolloutFailed(
                f"{what or 'a pod'} cannot start: the fault proxy's image {image!r} has no "
                f"python3 (container {container}: {found.group(0)}): "
                + fix.format(cm=fp.CODE_CONFIGMAP, side=CLOCK_SIDECAR)
            )
    if isinstance(exc, RolloutFailed) and fp.COMPONENT in text and "Image" in text:
        return RolloutFailed(f"{text}\n{IMAGE_HINT}")
    return exc

"""The public endpoint of a kube/gke sandbox: ``--sandbox-url-template``, routed or not.

With ``--sandbox-route`` the plugin makes the route (:mod:`.route`) and the URL must answer, else
bring-up fails saying why (DNS, TLS or HTTP, and the route's status). Without it, a URL that does
not answer in time leaves the port-forward as the endpoint (DNS or someone's ingress may lag)::

    await_public_url(config, info, target, namespace, deadline, objs, proxy)
    info.endpoint       # the https URL once it answered
    info.timings["public_url_s"]   # from the route's creation to the first answer
"""

from __future__ import annotations

import time
from typing import Any

from ...config import SandboxConfig
from ...errors import SandboxError
from ...info import SandboxInfo
from ...readiness import HttpReady, wait_until_ready
from .client import KubeTarget
from .names import render_url_template
from .proxy_setup import NamespaceProxy
from .route import create_route, parse_route, route_error

#: How long the public URL may take to answer (bounded by the startup timeout's rest).
PUBLIC_URL_GRACE = 60.0


def await_public_url(
    config: SandboxConfig,
    info: SandboxInfo,
    target: KubeTarget,
    namespace: str,
    deadline: float,
    objs: list[dict[str, Any]],
    proxy: NamespaceProxy | None,
) -> None:
    """Make the route (if asked), wait for the URL, make it the endpoint (see module doc)."""
    assert config.url_template is not None
    url = render_url_template(
        config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
    )
    route = parse_route(config.route)
    if route.kind != "none":
        info.extra["route"] = create_route(target, namespace, route, url, objs, proxy)
    grace = min(PUBLIC_URL_GRACE, max(deadline - time.monotonic(), 1.0))
    began = time.monotonic()
    public = HttpReady(url + config.health_path, what="the public URL")
    try:
        wait_until_ready(public, timeout=grace)
    except SandboxError as exc:
        if route.kind != "none":
            raise route_error(url, grace, public.last_probe(), route, target, namespace) from None
        if info.endpoint is None:
            raise
        # DNS or the ingress may lag behind; the port-forward still reaches the app.
        info.extra["public_url"] = url
        info.extra["public_url_error"] = str(exc).splitlines()[0]
        return
    info.timings["public_url_s"] = round(time.monotonic() - began, 4)
    info.extra["port_forward"] = info.endpoint
    info.endpoint = url

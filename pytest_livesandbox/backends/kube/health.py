"""Is everything of a kube sandbox still running (the backend's ``health()``).

One ``list pods`` call in the sandbox's namespace per check::

    kube_health(target, info).problems      # ["PostgreSQL of sandbox 3f9c2a1b ... not running"]
    kube_health(target, info).app_restarts  # restarts and replacements of the app's pods so far

The app's containers are restarted by the kubelet and its pods replaced by their controller
after an eviction (that is Kubernetes doing its job, counted and reported, not an error): the
count is the container restarts of the app's pods plus one for every app pod made after the
sandbox was ready. A PostgreSQL pod that is gone or failed is an error for the next test. An
API server that does not answer is not reported here (teardown says more).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...info import SandboxInfo
from ...protocol import SandboxHealth
from .client import KubeTarget, connect
from .faultproxy import COMPONENT as PROXY_COMPONENT
from .names import COMPONENT_LABEL
from .namespace import DB_ROLE, ROLE_LABEL

_TARGETS: dict[str, KubeTarget] = {}
#: Per sandbox: restarts (+1 if made after the sandbox was ready) of every app pod seen.
_SEEN: dict[str, dict[str, int]] = {}


def target_for(info: SandboxInfo) -> KubeTarget:
    """An API client for ``info``'s cluster, made once per process (xdist workers too)."""
    if info.id not in _TARGETS:
        kubeconfig = info.extra.get("kubeconfig")
        # The production guard passed when the sandbox was made; we only read its namespace.
        _TARGETS[info.id] = connect(
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
            context=info.extra.get("context"),
            allow_context=None,
            check_production=False,
        )
    return _TARGETS[info.id]


def _alive(pod: Any) -> bool:
    # Running (ready or about to be) or still being scheduled: not dead. Readiness may lag
    # a restart by a probe period, so it is not required here.
    return bool(pod.status) and pod.status.phase in ("Running", "Pending")


def kube_health(target: KubeTarget, info: SandboxInfo) -> SandboxHealth:
    """The state of ``info``'s pods: a missing/unready PostgreSQL, the app's restarts."""
    health = SandboxHealth()
    if not info.namespace or info.extra.get("attached"):
        return health
    try:
        pods = target.core.list_namespaced_pod(info.namespace, _request_timeout=5).items
    except Exception:
        return health
    db = [p for p in pods if (p.metadata.labels or {}).get(ROLE_LABEL) == DB_ROLE]
    if info.extra.get("postgres_in_namespace") and not any(_alive(p) for p in db):
        states = ", ".join(f"{p.metadata.name} {p.status.phase}" for p in db) or "no pod"
        health.problems.append(
            f"PostgreSQL of sandbox {info.id} (namespace {info.namespace}) is not running: "
            f"{states}. See `kubectl -n {info.namespace} get events`."
        )
    ready_at = info.created_at + info.timings.get("app_ready_s", 0.0)
    seen = _SEEN.setdefault(info.id, {})
    for pod in (p for p in pods if p not in db and _is_app(p)):
        statuses = pod.status.container_statuses if pod.status else None
        count = sum(int(c.restart_count or 0) for c in statuses or [])
        made = pod.metadata.creation_timestamp
        count += 1 if made is not None and made.timestamp() > ready_at else 0
        # Remembered: an evicted pod's restarts still count once it is gone.
        seen[pod.metadata.uid] = max(count, seen.get(pod.metadata.uid, 0))
    health.app_restarts = sum(seen.values())
    return health


def _is_app(pod: Any) -> bool:
    # Not a migration Job's pod, not the fault proxy (its restarts are not the app's).
    labels = pod.metadata.labels or {}
    return labels.get("job-name") is None and labels.get(COMPONENT_LABEL) != PROXY_COMPONENT

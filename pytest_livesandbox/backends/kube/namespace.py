"""The sandbox namespace: labels, TTL, guard rails (quota, limits, network policies), removal.

    core.create_namespace(namespace_body("sandbox-3f9c", labels, ttl=7200))
    create_objects(api, "sandbox-3f9c", guard_rails())   # quota, limits, network policies
    delete_namespace(core, "sandbox-3f9c", sandbox_id="3f9c")   # only if it carries our labels

NetworkPolicies need a CNI that enforces them (Calico, Cilium, GKE Dataplane V2); on a plain bridge
CNI they are stored but have no effect. Egress is left open so apps can reach their own outside
services.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiException

from ...errors import TeardownError, UnsafeTarget
from ...info import MANAGED_BY
from ...lease import Lease
from .names import (
    EXPIRES_AT,
    MANAGED_BY_LABEL,
    OWNED_SELECTOR,
    OWNER_LABEL,
    RUN_ID_LABEL,
    SANDBOX_ID_LABEL,
    expires_at,
    is_ours,
    lease_annotations,
    lease_of,
    parse_expires_at,
)

ROLE_LABEL = "livesandbox/role"
DB_ROLE = "database"
DELETE_TIMEOUT = 90.0

QUOTA = {"pods": "30", "requests.cpu": "4", "requests.memory": "8Gi", "limits.memory": "16Gi"}
DEFAULT_REQUEST = {"cpu": "50m", "memory": "64Mi"}
DEFAULT_LIMIT = {"memory": "512Mi"}


def namespace_body(
    name: str, labels: dict[str, str], ttl: float, lease: Lease | None = None
) -> dict[str, Any]:
    """The Namespace object: our labels, ``livesandbox/expires-at`` and the lease annotations."""
    annotations = {EXPIRES_AT: expires_at(ttl), **(lease_annotations(lease) if lease else {})}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
    }


def guard_rails() -> list[dict[str, Any]]:
    """ResourceQuota, LimitRange and NetworkPolicies created in every sandbox namespace."""

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}

    not_db = {"matchExpressions": [{"key": ROLE_LABEL, "operator": "NotIn", "values": [DB_ROLE]}]}
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": meta("livesandbox-quota"),
            "spec": {"hard": dict(QUOTA)},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": meta("livesandbox-limits"),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": dict(DEFAULT_REQUEST),
                        "default": dict(DEFAULT_LIMIT),
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("livesandbox-default-deny"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("livesandbox-db-from-app"),
            "spec": {
                "podSelector": {"matchLabels": {ROLE_LABEL: DB_ROLE}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 5432}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("livesandbox-ingress-to-app"),
            "spec": {"podSelector": not_db, "policyTypes": ["Ingress"], "ingress": [{}]},
        },
    ]


@dataclass(frozen=True)
class NamespaceRecord:
    """One sandbox namespace as ``livesandbox ls`` shows it."""

    name: str
    sandbox_id: str
    owner: str
    run_id: str
    created_at: float
    expires_at: float | None
    phase: str
    labels: dict[str, str] = field(default_factory=dict)
    lease: Lease | None = None
    resource_version: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def age(self) -> float:
        """Seconds since creation."""
        return time.time() - self.created_at

    @property
    def expired(self) -> bool:
        """True once the ``expires-at`` annotation lies in the past."""
        return self.expires_at is not None and self.expires_at < time.time()


def record_of(ns: Any) -> NamespaceRecord:
    """A :class:`NamespaceRecord` from a ``V1Namespace``."""
    labels = ns.metadata.labels or {}
    annotations = ns.metadata.annotations or {}
    created = ns.metadata.creation_timestamp
    return NamespaceRecord(
        name=ns.metadata.name,
        sandbox_id=labels.get(SANDBOX_ID_LABEL, "?"),
        owner=labels.get(OWNER_LABEL, "?"),
        run_id=labels.get(RUN_ID_LABEL, "?"),
        created_at=created.timestamp() if created else time.time(),
        expires_at=parse_expires_at(annotations.get(EXPIRES_AT)),
        phase=(ns.status.phase if ns.status else None) or "?",
        labels=dict(labels),
        lease=lease_of(annotations, labels),
        resource_version=ns.metadata.resource_version or "",
        annotations=dict(annotations),
    )


def list_sandboxes(core: Any, selector: str = "") -> list[NamespaceRecord]:
    """Every namespace carrying our ``managed-by`` label (and ``selector``'s, e.g. a reuse key)."""
    selectors = ",".join(s for s in (OWNED_SELECTOR, selector) if s)
    found = core.list_namespace(label_selector=selectors).items
    return [record_of(ns) for ns in found if is_ours(ns.metadata.labels)]


def delete_namespace(
    core: Any,
    name: str,
    *,
    sandbox_id: str | None = None,
    wait: float = DELETE_TIMEOUT,
) -> bool:
    """Delete our sandbox namespace ``name`` and wait (at most ``wait`` s) until it is gone.

    Returns False if it did not exist. Raises :class:`UnsafeTarget` (touching nothing) when the
    namespace lacks our ``managed-by`` label or, with ``sandbox_id``, belongs to another sandbox.
    """
    try:
        ns = core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    labels = ns.metadata.labels or {}
    if not is_ours(labels):
        raise UnsafeTarget(
            f"namespace {name!r} has no {MANAGED_BY_LABEL}=pytest-livesandbox label: it was not "
            "made by pytest-livesandbox, so it is left alone"
        )
    if sandbox_id is not None and labels.get(SANDBOX_ID_LABEL) != sandbox_id:
        raise UnsafeTarget(
            f"namespace {name!r} belongs to sandbox {labels.get(SANDBOX_ID_LABEL)!r}, not "
            f"{sandbox_id!r}; left alone"
        )
    _delete(core, name)
    # Throwaway pods need no grace period; the namespace controller would wait for each.
    try:
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(0.2)
    raise TeardownError(
        f"namespace {name!r} was still terminating after {wait:g}s; it is deleting in the "
        f"background (see `kubectl get namespace {name} -o yaml` for what blocks it)"
    )


def _delete(core: Any, name: str) -> None:
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise

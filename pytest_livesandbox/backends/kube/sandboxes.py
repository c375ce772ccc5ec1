"""Sandbox namespaces as ``livesandbox ls/gc/down`` see them, in the kubeconfig's cluster.

A namespace counts only when it carries our ``managed-by`` label; it is listed by the backend
named in its ``livesandbox/backend`` label (kube when it has none), so a gke sandbox is listed
once, by gke. A namespace annotated ``livesandbox/argocd-application`` (the argocd deployer)
shows its Application in ``where``; reaping deletes that Application (our labels checked) first::

    for record in list_records("kube", ListScope(kubeconfig=None, context=None)):
        reap_record(record)                   # delete_namespace, refused unless ours
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client import ApiException

from ...chaos.driver import remove_chaos_dir
from ...info import SandboxInfo
from ...protocol import ListScope, SandboxRecord
from .argocd import delete_application, list_ours
from .client import connect, kubeconfig_files
from .gonepods import remove_gone_pods
from .names import BACKEND_LABEL, OWNER_LABEL, SANDBOX_ID_LABEL
from .namespace import NamespaceRecord, delete_namespace, list_sandboxes, record_of


@dataclass
class _Handle:
    core: Any
    name: str
    sandbox_id: str
    target: Any = None
    application: str = ""


def _cluster(scope: ListScope) -> Any:
    """The scope's cluster, or None when no kubeconfig is there (and none was named)."""
    configured = any(f.is_file() for f in kubeconfig_files(scope.kubeconfig))
    if not (scope.required or configured or os.environ.get("KUBERNETES_SERVICE_HOST")):
        return None
    return connect(
        kubeconfig=scope.kubeconfig,
        context=scope.context,
        allow_context=None,
        check_production=False,
    )


def list_records(backend: str, scope: ListScope) -> list[SandboxRecord]:
    """The sandbox namespaces of ``backend`` in the scope's cluster."""
    cluster = _cluster(scope)
    if cluster is None:
        return []
    records = []
    namespaces = list_sandboxes(cluster.core)
    for ns in namespaces:
        if (ns.labels.get(BACKEND_LABEL) or "kube") != backend:
            continue
        expires_in = None if ns.expires_at is None else ns.expires_at - time.time()
        status = _status(ns)
        records.append(
            SandboxRecord(
                id=ns.sandbox_id,
                backend=backend,
                status=status,
                age=ns.age,
                owner=ns.owner,
                where=f"namespace/{ns.name} ({cluster.context})"
                + (f" + Argo CD Application {ns.application}" if ns.application else ""),
                expires_in=expires_in,
                reapable=status in ("expired", "lapsed"),
                protected=status in ("running", "terminating"),
                aliases=(ns.name,),
                lease_expires_in=None if ns.lease is None else ns.lease.expires_in,
                reuse_key=ns.lease.key if ns.lease is not None else "",
                handle=_Handle(cluster.core, ns.name, ns.sandbox_id, cluster, ns.application),
            )
        )
    records.extend(_orphaned_applications(backend, cluster, {ns.name for ns in namespaces}))
    return records


def _orphaned_applications(backend: str, cluster: Any, namespaces: set[str]) -> list[SandboxRecord]:
    """Our Argo CD Applications whose sandbox namespace is gone (e.g. deleted by hand)."""
    records = []
    for app in list_ours(cluster):
        meta, labels = app["metadata"], app["metadata"].get("labels") or {}
        dest = str(((app.get("spec") or {}).get("destination") or {}).get("namespace") or "")
        if (labels.get(BACKEND_LABEL) or "kube") != backend or not dest or dest in namespaces:
            continue
        try:
            cluster.core.read_namespace(dest)
            continue  # there, but not labelled as ours: not this listing's business
        except ApiException as exc:
            if exc.status != 404:
                raise
        created = parse_timestamp(meta.get("creationTimestamp"))
        name = f"{meta['namespace']}/{meta['name']}"
        sandbox_id = labels.get(SANDBOX_ID_LABEL, "?")
        records.append(
            SandboxRecord(
                id=sandbox_id,
                backend=backend,
                status="orphaned",
                age=time.time() - created if created else 0.0,
                owner=labels.get(OWNER_LABEL, "?"),
                where=f"Argo CD Application {name} ({cluster.context}; namespace {dest} is gone)",
                reapable=True,
                aliases=(str(meta["name"]),),
                handle=_Handle(cluster.core, dest, sandbox_id, cluster, name),
            )
        )
    return records


def parse_timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of a Kubernetes timestamp (``2026-12-01T11:27:09Z``), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _status(ns: NamespaceRecord) -> str:
    """``terminating``, ``lapsed``, ``expired``, ``warm``, ``kept``, ``running`` or the phase."""
    if ns.phase == "Terminating":
        return "terminating"
    if ns.lease is not None and ns.lease.lapsed:
        return "lapsed"
    if ns.expired:
        return "expired"
    if ns.lease is not None:
        return {"warm": "warm", "kept": "kept"}.get(ns.lease.state, "running")
    return ns.phase.lower()


def reap_record(record: SandboxRecord) -> None:
    """Delete the record's namespace and wait for it (our labels are checked again first).

    A namespace whose lease changed since it was listed (a run claimed it) is left alone.
    """
    handle: _Handle = record.handle
    if record.status == "lapsed":
        try:
            current = record_of(handle.core.read_namespace(handle.name))
        except ApiException:
            return
        if current.lease is not None and not current.lease.lapsed:
            return
    if handle.application and handle.target is not None:  # what it synced goes with it
        argocd_ns, _, app = handle.application.partition("/")
        delete_application(handle.target, argocd_ns, app, sandbox_id=handle.sandbox_id)
    delete_namespace(handle.core, handle.name, sandbox_id=handle.sandbox_id)
    # The chaos lock and (empty) ledger a killed run left on this machine go with it.
    remove_chaos_dir(SandboxInfo(handle.sandbox_id, record.backend, "", record.owner, 0.0))
    remove_gone_pods(handle.sandbox_id)

"""Sandbox namespaces as ``livesandbox ls/gc/down`` see them, in the kubeconfig's cluster.

A namespace counts only when it carries our ``managed-by`` label; it is listed by the backend
named in its ``livesandbox/backend`` label (kube when it has none), so a gke sandbox is listed
once, by gke::

    for record in list_records("kube", ListScope(kubeconfig=None, context=None)):
        reap_record(record)                   # delete_namespace, refused unless ours
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from ...protocol import ListScope, SandboxRecord
from .client import connect, kubeconfig_files
from .names import BACKEND_LABEL
from .namespace import delete_namespace, list_sandboxes


@dataclass
class _Handle:
    core: Any
    name: str
    sandbox_id: str


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
    for ns in list_sandboxes(cluster.core):
        if (ns.labels.get(BACKEND_LABEL) or "kube") != backend:
            continue
        expires_in = None if ns.expires_at is None else ns.expires_at - time.time()
        records.append(
            SandboxRecord(
                id=ns.sandbox_id,
                backend=backend,
                status="expired" if ns.expired else ns.phase.lower(),
                age=ns.age,
                owner=ns.owner,
                where=f"namespace/{ns.name} ({cluster.context})",
                expires_in=expires_in,
                reapable=ns.expired,
                protected=ns.phase == "Terminating",
                aliases=(ns.name,),
                handle=_Handle(cluster.core, ns.name, ns.sandbox_id),
            )
        )
    return records


def reap_record(record: SandboxRecord) -> None:
    """Delete the record's namespace and wait for it (our labels are checked again first)."""
    handle: _Handle = record.handle
    delete_namespace(handle.core, handle.name, sandbox_id=handle.sandbox_id)

"""``--sandbox-deployer=argocd``: the app deployed by an Argo CD ``Application``, as in production.

The namespace, its guard rails, PostgreSQL and the ``livesandbox-db`` Secret are made as for
``apply``; then one ``Application`` in Argo CD's namespace (``--sandbox-argocd-namespace``)
points at ``--sandbox-git-repo`` / ``--sandbox-git-revision`` / ``--sandbox-git-path`` with the
sandbox namespace as destination. It is created with its ``operation`` field set, which the
application controller executes at once (what ``argocd app sync`` does through the API
server: no waiting for the repository poll)::

    check_argocd(target, "argocd")                       # CRD and namespace there, else why
    body = application_body(name, labels, config, namespace, overrides)
    created = create_application(target, "argocd", body)
    wait_until_ready(SyncedHealthy(target, "argocd", name, namespace), timeout=60)
    delete_application(target, "argocd", name, sandbox_id=info.id)   # resources finalizer

Image overrides (``--sandbox-image COMPONENT=IMAGE`` and built digests) become kustomize patches
of the Application: the first container of every Deployment/StatefulSet/DaemonSet whose
``app.kubernetes.io/component`` label or name is COMPONENT gets the image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes.client import ApiException

from ...config import SandboxConfig
from ...errors import ProvisionError, RolloutFailed, UnsafeTarget
from . import diagnose
from .client import KubeTarget
from .names import COMPONENT_LABEL, OWNED_SELECTOR, SANDBOX_ID_LABEL, is_ours

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
CRD = f"{PLURAL}.{GROUP}"
FINALIZER = "resources-finalizer.argocd.argoproj.io"
IN_CLUSTER = "https://kubernetes.default.svc"
DELETE_TIMEOUT = 120.0
# Worst first: the resource whose health explains the Application's.
HEALTH_ORDER = ("Degraded", "Missing", "Unknown", "Progressing", "Suspended", "Healthy")
WORKLOADS = "(Deployment|StatefulSet|DaemonSet)"
INSTALL_HINT = (
    "install Argo CD into the cluster (our CI cluster: `sudo bash cluster/argocd-up`), point "
    "--sandbox-argocd-namespace at the namespace it runs in, or use --sandbox-deployer=apply"
)


def _custom(target: KubeTarget) -> Any:
    return k8s.CustomObjectsApi(target.api)


def check_argocd(target: KubeTarget, argocd_namespace: str) -> None:
    """Raise :class:`ProvisionError` naming the fix unless Argo CD's CRD and namespace exist."""
    try:
        k8s.ApiextensionsV1Api(target.api).read_custom_resource_definition(CRD)
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise ProvisionError(
            f"--sandbox-deployer=argocd: Argo CD is not installed in cluster {target.context} "
            f"(no CustomResourceDefinition {CRD}); {INSTALL_HINT}"
        ) from None
    try:
        target.core.read_namespace(argocd_namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise ProvisionError(
            f"--sandbox-argocd-namespace {argocd_namespace}: no such namespace in cluster "
            f"{target.context}; {INSTALL_HINT}"
        ) from None


def image_patches(
    overrides: Sequence[tuple[str, str]], pull_policy: str | None = None
) -> list[dict[str, Any]]:
    """Kustomize patches giving each COMPONENT's workloads (by label, by name) their image.

    >>> [p["target"]["labelSelector"] for p in image_patches([("backend", "app:2")])[:1]]
    ['app.kubernetes.io/component=backend']
    """
    ops: list[dict[str, str]] = []
    patches = []
    for component, image in overrides:
        ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        if pull_policy:
            ops.append(
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/imagePullPolicy",
                    "value": pull_policy,
                }
            )
        for target in (
            {"kind": WORKLOADS, "labelSelector": f"{COMPONENT_LABEL}={component}"},
            {"kind": WORKLOADS, "name": component},
        ):
            patches.append({"target": target, "patch": json.dumps(ops)})
    return patches


def application_body(
    name: str,
    labels: dict[str, str],
    config: SandboxConfig,
    namespace: str,
    patches: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The Application: source from git, destination the sandbox namespace, a sync requested."""
    source: dict[str, Any] = {
        "repoURL": config.git_repo,
        "targetRevision": config.git_revision,
        "path": config.git_path,
    }
    if patches:
        source["kustomize"] = {"patches": list(patches)}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": config.argocd_namespace,
            "labels": labels,
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": config.argocd_project,
            "source": source,
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
        },
        # Executed by the application controller at once (Argo CD's API server sets the same field).
        "operation": {
            "initiatedBy": {"username": "pytest-livesandbox"},
            "sync": {"revision": config.git_revision},
            "retry": {},
        },
    }


def create_application(target: KubeTarget, argocd_namespace: str, body: dict[str, Any]) -> None:
    """Create the Application (its sync starts when the controller sees it)."""
    try:
        _custom(target).create_namespaced_custom_object(
            GROUP, VERSION, argocd_namespace, PLURAL, body
        )
    except ApiException as exc:
        raise ProvisionError(
            f"could not create Argo CD Application {argocd_namespace}/{body['metadata']['name']}: "
            f"HTTP {exc.status} {_message(exc)}"
        ) from None


def read_application(target: KubeTarget, argocd_namespace: str, name: str) -> dict[str, Any]:
    """The Application as a dict (``{}`` when it is gone)."""
    try:
        obj: dict[str, Any] = _custom(target).get_namespaced_custom_object(
            GROUP, VERSION, argocd_namespace, PLURAL, name, _request_timeout=10
        )
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return obj


def describe(app: dict[str, Any]) -> str:
    """Conditions, the sync result per resource and the worst resource's health, in lines."""
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    health = status.get("health") or {}
    sync = status.get("sync") or {}
    lines = [
        f"Argo CD Application {app['metadata']['namespace']}/{app['metadata']['name']}: "
        f"sync {sync.get('status', '?')}, health {health.get('status', '?')}, operation "
        f"{op.get('phase', 'not started')}"
        + (f" at revision {sync['revision']}" if sync.get("revision") else "")
    ]
    if op.get("message"):
        lines.append(f"  operation: {op['message']}")
    for cond in status.get("conditions") or []:
        lines.append(f"  condition {cond.get('type')}: {cond.get('message', '')}")
    results = ((op.get("syncResult") or {}).get("resources")) or []
    if results:
        lines.append("  sync result:")
    for res in results:
        text = f"    {res.get('kind')}/{res.get('name')}: {res.get('status', '?')}"
        lines.append(text + (f": {res['message']}" if res.get("message") else ""))
    worst = worst_resource(status.get("resources") or [])
    if worst is None and status.get("resourceHealthSource") == "appTree":
        lines.append(
            "  resource health: kept in Argo CD's resource tree, not in the Application "
            "(resourceHealthSource appTree; controller flag --persist-resource-health puts it "
            "there); the pod states below say why"
        )
    if worst is not None:
        rh = worst.get("health") or {}
        lines.append(
            f"  worst resource: {worst.get('kind')}/{worst.get('name')} health "
            f"{rh.get('status')}" + (f": {rh['message']}" if rh.get("message") else "")
        )
    return "\n".join(lines)


def worst_resource(resources: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The resource with the worst health (``None`` when none reports one, or all are Healthy).

    >>> worst_resource([{"kind": "Service", "health": {"status": "Healthy"}},
    ...                 {"kind": "Deployment", "health": {"status": "Degraded"}}])["kind"]
    'Deployment'
    """
    rated = [r for r in resources if (r.get("health") or {}).get("status") in HEALTH_ORDER]
    if not rated:
        return None
    worst = min(rated, key=lambda r: HEALTH_ORDER.index(r["health"]["status"]))
    return None if worst["health"]["status"] == "Healthy" else worst


class SyncedHealthy:
    """A :class:`~pytest_livesandbox.readiness.WaitStrategy`: the sync succeeded, all Healthy.

    A failed sync operation or ``Degraded`` health raises :class:`RolloutFailed` at once with
    :func:`describe` and the namespace's pod states and events. ``synced_at``/``healthy_at``
    (``time.monotonic()``) and ``revision`` are filled in as they happen.
    """

    def __init__(
        self,
        target: KubeTarget,
        argocd_namespace: str,
        name: str,
        namespace: str,
        secrets: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.argocd_namespace = argocd_namespace
        self.name = name
        self.namespace = namespace
        self.secrets = secrets
        self.what = f"Argo CD Application {argocd_namespace}/{name}"
        self.synced_at: float | None = None
        self.healthy_at: float | None = None
        self.revision = ""
        self._app: dict[str, Any] = {}

    def check(self) -> bool:
        """One look at the Application's status."""
        self._app = read_application(self.target, self.argocd_namespace, self.name)
        status = self._app.get("status") or {}
        phase = (status.get("operationState") or {}).get("phase")
        sync = status.get("sync") or {}
        health = (status.get("health") or {}).get("status")
        if phase in ("Failed", "Error"):
            raise RolloutFailed(f"{self.what} failed to sync:\n{self.report()}")
        if phase != "Succeeded":
            return False
        if self.synced_at is None:
            self.synced_at = time.monotonic()
            self.revision = str(
                ((status.get("operationState") or {}).get("syncResult") or {}).get("revision")
                or sync.get("revision")
                or ""
            )
        if health == "Degraded":
            raise RolloutFailed(f"{self.what} synced but its health is Degraded:\n{self.report()}")
        if sync.get("status") == "Synced" and health == "Healthy":
            self.healthy_at = time.monotonic()
            return True
        return False

    def report(self) -> str:
        """:func:`describe` plus pod states, events and log tails of the sandbox namespace."""
        try:
            pods = list(
                self.target.core.list_namespaced_pod(self.namespace, _request_timeout=10).items
            )
        except ApiException:
            pods = []
        text = describe(self._app) if self._app else f"{self.what} is gone"
        pods_text = diagnose.report(self.target.core, self.namespace, pods, secrets=self.secrets)
        return diagnose.scrub(f"{text}\n{pods_text}", self.secrets)

    def hint(self) -> str:
        """Everything known at the deadline, and where to look when the controller never acted."""
        with_app = self.report()
        if not (self._app.get("status") or {}).get("operationState"):
            with_app += (
                f"\nHint: Argo CD's application controller has not started the sync: check its "
                f"pods in namespace {self.argocd_namespace} (and its log)."
            )
        return with_app + "\nHint: raise --sandbox-startup-timeout if the cluster is only slow."


def live_objects(target: KubeTarget, app: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The synced Services and workloads of the Application, read back as manifest-like dicts."""
    readers = {
        "Service": lambda n: target.core.read_namespaced_service(n, namespace),
        "Deployment": lambda n: target.apps.read_namespaced_deployment(n, namespace),
        "StatefulSet": lambda n: target.apps.read_namespaced_stateful_set(n, namespace),
        "DaemonSet": lambda n: target.apps.read_namespaced_daemon_set(n, namespace),
    }
    serialize: Any = target.api.sanitize_for_serialization
    objs = []
    for res in (app.get("status") or {}).get("resources") or []:
        reader = readers.get(str(res.get("kind")))
        if reader is None or res.get("namespace") != namespace:
            continue
        try:
            obj: dict[str, Any] = serialize(reader(res["name"]))
        except ApiException:
            continue
        obj.setdefault("kind", res["kind"])
        objs.append(obj)
    return objs


def delete_application(
    target: KubeTarget,
    argocd_namespace: str,
    name: str,
    *,
    sandbox_id: str,
    wait: float = DELETE_TIMEOUT,
) -> bool:
    """Delete our Application with its resources (finalizer) and wait until it is gone.

    Returns False when there was none. Raises :class:`UnsafeTarget` (touching nothing) unless it
    carries our labels and this sandbox's id.
    """
    app = read_application(target, argocd_namespace, name)
    if not app:
        return False
    labels = app["metadata"].get("labels") or {}
    if not is_ours(labels) or labels.get(SANDBOX_ID_LABEL) != sandbox_id:
        raise UnsafeTarget(
            f"Argo CD Application {argocd_namespace}/{name} is not sandbox {sandbox_id}'s "
            "(labels differ); left alone"
        )
    custom = _custom(target)
    if FINALIZER not in (app["metadata"].get("finalizers") or []):
        patch = {
            "metadata": {"finalizers": [*(app["metadata"].get("finalizers") or []), FINALIZER]}
        }
        custom.patch_namespaced_custom_object(GROUP, VERSION, argocd_namespace, PLURAL, name, patch)
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, argocd_namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    deadline = time.monotonic() + wait
    while read_application(target, argocd_namespace, name):
        if time.monotonic() >= deadline:
            raise ProvisionError(
                f"Argo CD Application {argocd_namespace}/{name} was not gone {wait:g}s after its "
                "deletion (its resources finalizer waits for the application controller)"
            )
        time.sleep(0.2)
    return True


def list_ours(target: KubeTarget) -> list[dict[str, Any]]:
    """Applications carrying our ``managed-by`` label, in every namespace.

    ``[]`` without Argo CD, or when the credentials may not list Applications cluster-wide.
    """
    try:
        found: dict[str, Any] = _custom(target).list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=OWNED_SELECTOR, _request_timeout=10
        )
    except ApiException as exc:
        if exc.status in (403, 404):  # not ours to see, or Argo CD is not installed
            return []
        raise
    return list(found.get("items") or [])


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)

"""The in-cluster reaper: a CronJob deleting sandbox namespaces whose lease lapsed or TTL passed.

``livesandbox reaper install`` puts it into the cluster, so a CI runner killed mid-run leaves
nothing behind even if nobody runs ``livesandbox gc`` (Ryuk for Kubernetes)::

    install_reaper(target, image="localhost/livesandbox/reaper:1", schedule="*/2 * * * *")
    uninstall_reaper(target)

What it is allowed to do is as small as Kubernetes can express: a ClusterRole with namespaces
``list`` and ``delete`` only, and, because RBAC cannot filter by label, a
ValidatingAdmissionPolicy that refuses the reaper's ServiceAccount any delete of a namespace
without our ``app.kubernetes.io/managed-by`` label. The image is ours
(``cluster/images/reaper.recipe``: one static Go binary, ``cluster/cmd/reaper``).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client import ApiException

from ...info import MANAGED_BY
from ...protocol import ListScope, ReaperOptions
from .client import KubeTarget, connect
from .names import MANAGED_BY_LABEL

DEFAULT_IMAGE = "localhost/livesandbox/reaper:1"
DEFAULT_NAMESPACE = "livesandbox-system"
DEFAULT_SCHEDULE = "*/2 * * * *"
ROLE_LABEL = "livesandbox/role"


def reaper_objects(
    namespace: str, image: str, schedule: str, *, selector: str = "", suspend: bool = False
) -> dict[str, dict[str, Any]]:
    """The reaper's objects by kind (names derive from ``namespace``, so installs never clash)."""
    name = f"{namespace}-reaper"
    labels = {ROLE_LABEL: "reaper"}
    user = f"system:serviceaccount:{namespace}:reaper"
    env = [{"name": "REAPER_SELECTOR", "value": selector}] if selector else []
    return {
        "Namespace": {"metadata": {"name": namespace, "labels": labels}},
        "ServiceAccount": {"metadata": {"name": "reaper", "namespace": namespace}},
        "ClusterRole": {
            "metadata": {"name": name, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "delete"]}
            ],
        },
        "ClusterRoleBinding": {
            "metadata": {"name": name, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reaper", "namespace": namespace}],
        },
        "ValidatingAdmissionPolicy": {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["DELETE"],
                            "resources": ["namespaces"],
                        }
                    ]
                },
                "matchConditions": [
                    {
                        "name": "is-the-reaper",
                        "expression": f"request.userInfo.username == '{user}'",
                    }
                ],
                "validations": [
                    {
                        "expression": (
                            f"has(oldObject.metadata.labels) && "
                            f"'{MANAGED_BY_LABEL}' in oldObject.metadata.labels && "
                            f"oldObject.metadata.labels['{MANAGED_BY_LABEL}'] == '{MANAGED_BY}'"
                        ),
                        "message": f"the reaper deletes only namespaces labelled {MANAGED_BY}",
                    }
                ],
            },
        },
        "ValidatingAdmissionPolicyBinding": {
            "metadata": {"name": name, "labels": labels},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        },
        "CronJob": {
            "metadata": {"name": "reaper", "namespace": namespace, "labels": labels},
            "spec": {
                "schedule": schedule,
                "suspend": suspend,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 2,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "ttlSecondsAfterFinished": 600,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "serviceAccountName": "reaper",
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "reaper",
                                        "image": image,
                                        "imagePullPolicy": "IfNotPresent",
                                        "env": env,
                                        "resources": {
                                            "requests": {"cpu": "10m", "memory": "16Mi"},
                                            "limits": {"memory": "64Mi"},
                                        },
                                    }
                                ],
                            },
                        },
                    }
                },
            },
        },
    }


def _apply(create: Any, patch: Any, name: str, body: dict[str, Any], *ns: str) -> None:
    try:
        create(*ns, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        patch(name, *ns, body)


def install_reaper(
    target: KubeTarget,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    image: str = DEFAULT_IMAGE,
    schedule: str = DEFAULT_SCHEDULE,
    selector: str = "",
    suspend: bool = False,
) -> list[str]:
    """Create (or update) the reaper's objects; returns ``kind/name`` of each."""
    objs = reaper_objects(namespace, image, schedule, selector=selector, suspend=suspend)
    rbac = k8s.RbacAuthorizationV1Api(target.api)
    admission = k8s.AdmissionregistrationV1Api(target.api)
    batch = k8s.BatchV1Api(target.api)
    core = target.core
    name = f"{namespace}-reaper"
    _apply(core.create_namespace, core.patch_namespace, namespace, objs["Namespace"])
    _apply(
        core.create_namespaced_service_account,
        core.patch_namespaced_service_account,
        "reaper",
        objs["ServiceAccount"],
        namespace,
    )
    _apply(rbac.create_cluster_role, rbac.patch_cluster_role, name, objs["ClusterRole"])
    _apply(
        rbac.create_cluster_role_binding,
        rbac.patch_cluster_role_binding,
        name,
        objs["ClusterRoleBinding"],
    )
    _apply(
        admission.create_validating_admission_policy,
        admission.patch_validating_admission_policy,
        name,
        objs["ValidatingAdmissionPolicy"],
    )
    _apply(
        admission.create_validating_admission_policy_binding,
        admission.patch_validating_admission_policy_binding,
        name,
        objs["ValidatingAdmissionPolicyBinding"],
    )
    _apply(
        batch.create_namespaced_cron_job,
        batch.patch_namespaced_cron_job,
        "reaper",
        objs["CronJob"],
        namespace,
    )
    return [f"{kind}/{obj['metadata']['name']}" for kind, obj in objs.items()]


def uninstall_reaper(target: KubeTarget, *, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Remove what :func:`install_reaper` made (only objects carrying the reaper's role label)."""
    name = f"{namespace}-reaper"
    rbac = k8s.RbacAuthorizationV1Api(target.api)
    admission = k8s.AdmissionregistrationV1Api(target.api)
    deletes = [
        (
            admission.read_validating_admission_policy_binding,
            admission.delete_validating_admission_policy_binding,
        ),
        (admission.read_validating_admission_policy, admission.delete_validating_admission_policy),
        (rbac.read_cluster_role_binding, rbac.delete_cluster_role_binding),
        (rbac.read_cluster_role, rbac.delete_cluster_role),
    ]
    for read, delete in deletes:
        _delete_if_reaper(read, delete, name)
    _delete_if_reaper(target.core.read_namespace, target.core.delete_namespace, namespace)


def _delete_if_reaper(read: Any, delete: Any, name: str) -> None:
    try:
        obj = read(name)
        if (obj.metadata.labels or {}).get(ROLE_LABEL) == "reaper":
            delete(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


class ReaperInstaller:
    """The ``livesandbox reaper`` capability of the kube backends (mixed into ``KubeBackend``)."""

    def install_reaper(self, scope: ListScope, options: ReaperOptions) -> list[str]:
        """Install (or update) the reaper CronJob in the scope's cluster."""
        target = _target(scope)
        try:
            return install_reaper(
                target,
                namespace=options.namespace or DEFAULT_NAMESPACE,
                image=options.image or DEFAULT_IMAGE,
                schedule=options.schedule or DEFAULT_SCHEDULE,
                selector=options.selector,
                suspend=options.suspend,
            )
        finally:
            target.close()

    def uninstall_reaper(self, scope: ListScope, options: ReaperOptions) -> None:
        """Remove the reaper from the scope's cluster."""
        target = _target(scope)
        try:
            uninstall_reaper(target, namespace=options.namespace or DEFAULT_NAMESPACE)
        finally:
            target.close()


def _target(scope: ListScope) -> KubeTarget:
    return connect(
        kubeconfig=scope.kubeconfig,
        context=scope.context,
        allow_context=None,
        check_production=False,
    )

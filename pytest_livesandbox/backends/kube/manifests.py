"""The app's manifests: load (YAML folder, file or kustomization), override images, create.

    objs = load_manifests(Path("k8s/"))                     # list of plain dicts
    override_images(objs, (("backend", "myapp:dev"),))     # by component label or workload name
    substitute(objs, {"LIVESANDBOX_ID": "3f9c"})            # ${LIVESANDBOX_ID} in any string
    create_objects(api, "sandbox-3f9c", objs)

A kustomization that only lists ``resources:`` is read directly; one using more (patches,
generators, images, ...) is built with ``kubectl kustomize`` or ``kustomize build``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import utils as k8s_utils
from kubernetes.client import ApiException

from ...errors import ConfigError, ProvisionError
from .names import COMPONENT_LABEL

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
# Cluster-scoped objects would outlive the sandbox namespace: refused.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CSIDriver",
    }
)
_PLACEHOLDER = re.compile(r"\$\{(LIVESANDBOX_[A-Z_]+)\}")
Obj = dict[str, Any]


def load_manifests(path: Path) -> list[Obj]:
    """Every object in ``path``: a YAML file, a folder of YAML files, or a kustomization."""
    if not path.exists():
        raise ConfigError(
            f"--sandbox-manifests {path} does not exist; point it at a folder of Kubernetes "
            "YAML files or a kustomization"
        )
    if path.is_file():
        return _flatten(_parse(path.read_text(), str(path)))
    for name in KUSTOMIZATION_FILES:
        if (path / name).is_file():
            return _flatten(_kustomize(path, path / name))
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise ConfigError(f"--sandbox-manifests {path} holds no .yaml/.yml files")
    return _flatten(obj for f in files for obj in _parse(f.read_text(), str(f)))


def _parse(text: str, where: str) -> list[Obj]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ConfigError(f"{where}: every document needs apiVersion and kind")
    return docs


def _flatten(objs: Iterable[Obj]) -> list[Obj]:
    flat: list[Obj] = []
    for obj in objs:
        if obj.get("kind") == "List":
            flat.extend(_flatten(obj.get("items") or []))
        else:
            flat.append(obj)
    return flat


def _kustomize(folder: Path, file: Path) -> list[Obj]:
    try:
        spec = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    unsupported = sorted(set(spec) - {"apiVersion", "kind", "resources"})
    if not unsupported:
        # A plain list of resources: read it here, the same with or without kustomize installed.
        objs: list[Obj] = []
        for entry in spec.get("resources") or []:
            objs.extend(load_manifests(folder / str(entry)))
        return objs
    for cmd in (["kubectl", "kustomize"], ["kustomize", "build"]):
        if shutil.which(cmd[0]):
            done = subprocess.run(
                [*cmd, str(folder)], capture_output=True, text=True, timeout=60, check=False
            )
            if done.returncode != 0:
                raise ConfigError(
                    f"`{' '.join(cmd)} {folder}` failed: {done.stderr.strip()[-800:]}"
                )
            return _parse(done.stdout, f"{' '.join(cmd)} {folder}")
    raise ConfigError(
        f"{file} uses {', '.join(unsupported)}, which needs kustomize: install kubectl or "
        "kustomize, or point --sandbox-manifests at plain YAML"
    )


def workload_pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/Pod, else ``None``."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    elif kind not in (*WORKLOAD_KINDS, "Job"):
        return None
    return ((spec.get("template") or {}).get("spec")) or None


def components(obj: Obj) -> set[str]:
    """Names an image override may use for ``obj``: its component label(s) and its name."""
    names = {str(obj.get("metadata", {}).get("name", ""))}
    names.add(str((obj.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL, "")))
    template = (obj.get("spec") or {}).get("template") or {}
    names.add(str((template.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL, "")))
    return names - {""}


def override_images(
    objs: Sequence[Obj], overrides: Sequence[tuple[str, str]], *, pull_policy: str | None = None
) -> set[str]:
    """Apply ``--sandbox-image COMPONENT=IMAGE`` to the workloads in ``objs`` (in place).

    A component matches a workload's ``app.kubernetes.io/component`` label or its name; the
    container of the same name gets the image, else the workload's first container. Returns the
    components that matched (the caller decides what an unmatched one means). ``pull_policy``
    also sets that container's ``imagePullPolicy`` (a pushed digest must be pulled).
    """
    used: set[str] = set()
    for component, image in overrides:
        for obj in objs:
            pod = workload_pod_spec(obj)
            if pod is None or component not in components(obj):
                continue
            containers = pod.get("containers") or []
            if not containers:
                continue
            chosen = next((c for c in containers if c.get("name") == component), containers[0])
            chosen["image"] = image
            if pull_policy:
                chosen["imagePullPolicy"] = pull_policy
            used.add(component)
    return used


def known_components(objs: Sequence[Obj]) -> list[str]:
    """Every component name an override could use (for error messages)."""
    loads = [obj for obj in objs if workload_pod_spec(obj) is not None]
    return sorted({name for obj in loads for name in components(obj)})


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """``${LIVESANDBOX_*}`` placeholders in every string of ``value`` replaced (new object)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


def check_namespaced(objs: Sequence[Obj], namespace: str) -> None:
    """Refuse cluster-scoped kinds; pin every object into ``namespace`` (in place)."""
    for obj in objs:
        kind = obj.get("kind", "?")
        name = (obj.get("metadata") or {}).get("name", "?")
        if kind in CLUSTER_SCOPED:
            raise ConfigError(
                f"manifest {kind} {name!r} is cluster-scoped and would outlive the sandbox; "
                "sandbox manifests may only hold namespaced objects (install cluster-wide things "
                "once, outside the test run)"
            )
        obj.setdefault("metadata", {})["namespace"] = namespace


_utils: Any = k8s_utils


def create_objects(api: Any, namespace: str, objs: Sequence[Obj]) -> None:
    """Create ``objs`` in ``namespace`` (fresh namespace: create, not apply)."""
    for obj in objs:
        try:
            _utils.create_from_dict(api, obj, namespace=namespace)
        except k8s_utils.FailToCreateError as exc:
            raise ProvisionError(_describe(obj, exc.api_exceptions)) from None
        except AttributeError:
            # No typed API for this kind (a custom resource): the dynamic client finds it.
            _create_dynamic(api, namespace, obj)


def _create_dynamic(api: Any, namespace: str, obj: Obj) -> None:
    from kubernetes import dynamic

    client: Any = dynamic.DynamicClient
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

    try:
        resource = client(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        resource.create(body=obj, namespace=namespace)
    except ResourceNotFoundError:
        raise ProvisionError(
            f"the cluster does not know {obj['kind']} ({obj['apiVersion']}); install its CRD "
            "before the run"
        ) from None
    except DynamicApiError as exc:
        summary: Any = exc.summary
        raise ProvisionError(f"could not create {obj['kind']}: {summary()}") from None


def _describe(obj: Obj, errors: Sequence[ApiException]) -> str:
    name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')!r}"
    reasons = []
    for err in errors:
        body = err.body if isinstance(err.body, str) else ""
        match = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', body)
        reasons.append(match.group(1) if match else f"HTTP {err.status} {err.reason}")
    return f"could not create {name}: {'; '.join(reasons)}"


ENDPOINT_ANNOTATION = "livesandbox/endpoint"


def workloads(objs: Sequence[Obj]) -> list[tuple[str, str]]:
    """``(kind, name)`` of every long-running workload in ``objs`` (what the rollout waits for)."""
    loads = [o for o in objs if o.get("kind") in WORKLOAD_KINDS]
    return [(str(o["kind"]), str(o["metadata"]["name"])) for o in loads]


def endpoint_target(objs: Sequence[Obj]) -> tuple[str, int | str, tuple[str, str] | None] | None:
    """``(label selector, container port, workload)`` of the app's HTTP endpoint, or ``None``.

    The Service annotated ``livesandbox/endpoint: "true"`` wins, else the only Service, else the
    one selecting the first workload; its first port's ``targetPort`` is used. Without a Service,
    the first workload's first declared container port.
    """
    services = [
        o for o in objs if o.get("kind") == "Service" and (o.get("spec") or {}).get("selector")
    ]
    loads = [o for o in objs if o.get("kind") in WORKLOAD_KINDS]
    chosen = next(
        (
            s
            for s in services
            if str((s["metadata"].get("annotations") or {}).get(ENDPOINT_ANNOTATION)).lower()
            == "true"
        ),
        None,
    )
    if chosen is None and len(services) == 1:
        chosen = services[0]
    if chosen is None and services and loads:
        chosen = next((s for s in services if _selects(s, loads[0])), None)
    if chosen is None and services:
        chosen = sorted(services, key=lambda s: str(s["metadata"]["name"]))[0]
    if chosen is not None:
        selector = chosen["spec"]["selector"]
        ports = chosen["spec"].get("ports") or [{}]
        port = ports[0].get("targetPort") or ports[0].get("port")
        if port is None:
            return None
        workload = next((w for w in loads if _selects(chosen, w)), None)
        return (
            ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            port if isinstance(port, int) else str(port),
            (str(workload["kind"]), str(workload["metadata"]["name"])) if workload else None,
        )
    for load in loads:
        pod = workload_pod_spec(load) or {}
        labels = ((load["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        for container in pod.get("containers") or []:
            for declared in container.get("ports") or []:
                if labels and declared.get("containerPort"):
                    return (
                        ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                        int(declared["containerPort"]),
                        (str(load["kind"]), str(load["metadata"]["name"])),
                    )
    return None


def _selects(service: Obj, workload: Obj) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    template = (workload.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

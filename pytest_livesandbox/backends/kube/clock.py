"""The app pods' clock on kube/gke: libfaketime from a ConfigMap, the control file in an emptyDir.

With ``livesandbox_fake_clock = on`` (or ``auto`` with the library installed) every pod template
of the app's workloads gets, before it is created::

    volume  livesandbox-faketime   ConfigMap of the same name: the library's bytes (binaryData,
                                   ~90 KB of the 1 MiB a ConfigMap may hold), read-only
    volume  livesandbox-clock      emptyDir (1 Mi, memory): the control file ``app.clock``
    env     LD_PRELOAD, FAKETIME_TIMESTAMP_FILE, ... in each app container (and nothing else)
    sidecar livesandbox-clock      the fault proxy's image (python3, sh), ``restricted``
                                   securityContext, writes ``+0 x1`` and waits; the clock fault
                                   execs ``sh -c`` in it to replace the file atomically

Why a ConfigMap and a sidecar: the library is the one this machine preloads locally
(``LIVESANDBOX_FAKETIME_LIB`` or Debian's), so no image has to carry it and nothing is pulled;
an app image may be distroless (no shell to exec into), and a ConfigMap the kubelet syncs only
every minute or so, so the control file lives in an ``emptyDir`` the sidecar writes when asked
(``pods/exec``). The pod passes the ``restricted`` Pod Security Standard when the app does. The
preload stays for the pod's life (as the local supervisor's app keeps it); after each clock fault
every app pod's control file is back to ``+0 x1`` (real time) and the app's ``Date`` header
says so::

    objs.insert(0, instrument(config, objs, info))   # None: the clock stays real
    write_all(target, namespace, "+3600.000000 x1")  # -> {pod: spec}
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...chaos.clock import (
    CONTROL_FILE,
    INSTALL_HINT,
    NEUTRAL_SPEC,
    NOT_PRELOADABLE,
    app_date_offset,
    control_fault,
    find_faketime,
    note_sleep_problem,
    preload_env,
    spec_for,
)
from ...errors import ChaosError, ProvisionError
from ...faultproxy import proxy_image
from . import faultproxy as fp

if TYPE_CHECKING:
    from ...chaos.ledger import Ledger
    from ...chaos.markers import Fault
    from ...config import SandboxConfig
    from ...info import SandboxInfo
    from .client import KubeTarget

CONFIGMAP = "livesandbox-faketime"
VOLUME = "livesandbox-clock"
SIDECAR = "livesandbox-clock"
LIB_DIR = "/livesandbox-faketime"
CLOCK_DIR = "/livesandbox-clock"
#: The variables :func:`instrument` adds to app containers (the migration Job leaves them out).
CLOCK_ENV = frozenset(preload_env(Path(LIB_DIR), Path(CLOCK_DIR)))
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
# PID 1 without a SIGTERM handler ignores it: the pod would wait out its grace period.
_SIDECAR_SCRIPT = (
    "import os, signal, sys\n"
    "path = sys.argv[1]\n"
    "if not os.path.exists(path):\n"
    "    with open(path + '.tmp', 'w') as f: f.write(sys.argv[2] + '\\n')\n"
    "    os.replace(path + '.tmp', path)\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "while True: signal.pause()\n"
)


def instrument(
    config: SandboxConfig, objs: list[dict[str, Any]], info: SandboxInfo
) -> dict[str, Any] | None:
    """Add the library, control file and sidecar to the app's pod templates; the ConfigMap.

    ``None`` (and nothing changed) when the clock stays real. Records ``info.extra["fake_clock"]``.
    """
    if config.fake_clock == "off":
        return None
    library = find_faketime()
    templates = [
        obj["spec"]["template"]
        for obj in objs
        if obj.get("kind") in _WORKLOADS and obj.get("spec", {}).get("template")
    ]
    if library is None or not templates:
        if config.fake_clock == "auto":
            return None
        why = (
            f"libfaketime is not installed on this machine ({INSTALL_HINT})"
            if library is None
            else "the app manifests have no workload with a pod template"
        )
        raise ProvisionError(f"--sandbox-fake-clock=on: {why}; or set it to auto/off")
    image = proxy_image(config.image)
    env = preload_env(Path(LIB_DIR) / library.name, Path(CLOCK_DIR) / CONTROL_FILE)
    containers: list[str] = []
    for template in templates:
        spec = template.setdefault("spec", {})
        spec.setdefault("volumes", []).extend(
            [
                {"name": CONFIGMAP, "configMap": {"name": CONFIGMAP, "defaultMode": 0o444}},
                {"name": VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            ]
        )
        for container in spec.get("containers", []):
            container.setdefault("env", []).extend({"name": k, "value": v} for k, v in env.items())
            container.setdefault("volumeMounts", []).extend(
                [
                    {"name": CONFIGMAP, "mountPath": LIB_DIR, "readOnly": True},
                    # Read-write: reads of a read-only mount leave the atime alone, and the
                    # atime is how check_loaded knows the app's libfaketime reads the file.
                    {"name": VOLUME, "mountPath": CLOCK_DIR},
                ]
            )
            containers.append(str(container.get("name")))
        spec["containers"].append(sidecar(image))
    info.extra["fake_clock"] = {
        "library": str(library),
        "configmap": CONFIGMAP,
        "sidecar": SIDECAR,
        "containers": containers,
    }
    note_sleep_problem(library, info.extra["fake_clock"])
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "labels": dict(fp.LABELS)},
        "binaryData": {library.name: base64.b64encode(library.read_bytes()).decode()},
    }


def sidecar(image: str) -> dict[str, Any]:
    """The container that owns the control file (``restricted`` securityContext)."""
    return {
        "name": SIDECAR,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", _SIDECAR_SCRIPT, f"{CLOCK_DIR}/{CONTROL_FILE}", NEUTRAL_SPEC],
        "volumeMounts": [{"name": VOLUME, "mountPath": CLOCK_DIR}],
        "resources": {
            "requests": {"cpu": "5m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "48Mi"},
        },
        "securityContext": {
            **fp.RESTRICTED_CONTAINER,
            "runAsNonRoot": True,
            "runAsUser": fp.RUN_AS,
            "runAsGroup": fp.RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def clock_pods(target: KubeTarget, namespace: str) -> list[Any]:
    """The running, not terminating pods that carry the clock sidecar."""
    pods = target.core.list_namespaced_pod(namespace).items
    return [
        pod
        for pod in pods
        if pod.metadata.deletion_timestamp is None
        and pod.status.phase == "Running"
        and any(c.name == SIDECAR for c in pod.spec.containers)
    ]


def _exec(target: KubeTarget, namespace: str, pod: str, script: str) -> str:
    from kubernetes.stream import stream

    out = stream(
        target.core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=SIDECAR,
        command=["sh", "-c", script],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
        _preload_content=True,
    )
    return str(out).strip()


def write_all(target: KubeTarget, namespace: str, spec: str) -> dict[str, str]:
    """Replace every clock pod's control file with ``spec``; returns what each now holds."""
    path = f"{CLOCK_DIR}/{CONTROL_FILE}"
    script = (
        f"printf '%s\\n' {shlex.quote(spec)} > {path}.tmp && mv -f {path}.tmp {path} && cat {path}"
    )
    pods = clock_pods(target, namespace)
    if not pods:
        raise ChaosError(
            f"clock: no running app pod in namespace {namespace} has the {SIDECAR} sidecar"
        )
    seen = {pod.metadata.name: _exec(target, namespace, pod.metadata.name, script) for pod in pods}
    wrong = {name: got for name, got in seen.items() if got != spec}
    if wrong:
        raise ChaosError(f"clock: the control file of {wrong} is not {spec!r}")
    return seen


def read_all(target: KubeTarget, namespace: str) -> dict[str, str]:
    """Each clock pod's control-file line."""
    path = f"{CLOCK_DIR}/{CONTROL_FILE}"
    return {
        pod.metadata.name: _exec(target, namespace, pod.metadata.name, f"cat {path} || true")
        for pod in clock_pods(target, namespace)
    }


def app_started_at(target: KubeTarget, namespace: str) -> float:
    """The latest start of an app container in the clock pods (libfaketime's ``start``).

    The API gives whole seconds: a ``rate`` is then off by up to ``rate - 1`` app seconds.
    """
    latest = 0.0
    for pod in clock_pods(target, namespace):
        for status in pod.status.container_statuses or []:
            running = status.state.running if status.state else None
            if status.name != SIDECAR and running is not None and running.started_at:
                latest = max(latest, running.started_at.timestamp())
    return latest


def clock_fault(
    target: Callable[[], KubeTarget], info: SandboxInfo, ledger: Ledger, owner: str
) -> Callable[[Fault, dict[str, Any]], Callable[[], dict[str, Any]]]:
    """The clock handler: ``fault`` to every app pod's control file, recorded in ``ledger``.

    The undo puts the real time back; the app's own ``Date`` header (its health path, through
    the endpoint) is checked both ways.
    """

    def handler(fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        key = ledger.add("clock", {}, owner)
        try:
            undo = _apply(target(), info, fault, record)
        except BaseException:
            ledger.remove(key)
            raise

        def remove() -> dict[str, Any]:
            try:
                return undo()
            finally:
                ledger.remove(key)

        return remove

    return handler


def _apply(
    target: KubeTarget, info: SandboxInfo, fault: Fault, record: dict[str, Any]
) -> Callable[[], dict[str, Any]]:
    namespace = str(info.namespace)
    if not info.extra.get("fake_clock"):
        raise ChaosError(
            "clock: the app pods run without libfaketime (livesandbox_fake_clock is off, or "
            "auto found no library on this machine)"
        )
    path = info.extra.get("health_path", "/healthz")

    def write(offset_s: float, rate: float) -> str:
        spec = spec_for(offset_s, rate, app_started_at=app_started_at(target, namespace))
        record["pods"] = sorted(write_all(target, namespace, spec))
        return spec

    return control_fault(
        fault,
        record,
        write=write,
        reset=lambda: write_all(target, namespace, NEUTRAL_SPEC),
        check_url=(info.endpoint + path) if info.endpoint else None,
    )


def moved_pods(target: KubeTarget, info: SandboxInfo) -> dict[str, str]:
    """App pods whose control file is not ``+0 x1`` (empty without the clock)."""
    if not info.extra.get("fake_clock") or not info.namespace:
        return {}
    found = read_all(target, info.namespace)
    return {pod: spec for pod, spec in found.items() if spec not in ("", NEUTRAL_SPEC)}


def reset_moved(target: KubeTarget, info: SandboxInfo, *, always: bool = False) -> list[str]:
    """Put moved app pods' clocks back (repair; ``always``: every one); says what was done."""
    if not info.extra.get("fake_clock") or not (always or moved_pods(target, info)):
        return []
    write_all(target, str(info.namespace), NEUTRAL_SPEC)
    return ["set the app pods' clocks back to the real time"]


def moved_problems(target: KubeTarget, info: SandboxInfo) -> list[str]:
    """Baseline: every app pod's clock on the real time."""
    return [
        f"the app pod {pod}'s clock is still moved (libfaketime spec {spec!r})"
        for pod, spec in moved_pods(target, info).items()
    ]


def unread_pods(target: KubeTarget, namespace: str) -> list[str]:
    """App pods whose control file nobody has read since the sidecar wrote it.

    libfaketime re-reads the file on every clock call (``FAKETIME_NO_CACHE=1``), so once the app
    has answered a request (its ``Date`` header) the file's atime is past its mtime (``relatime``
    updates an atime that is not newer than the mtime; the app's mount is read-write because a
    read-only mount never updates it): a pod where it is not, did not load the library.
    """
    path = f"{CLOCK_DIR}/{CONTROL_FILE}"
    script = f"stat -c '%.9X %.9Y' {path}"
    unread = []
    for pod in clock_pods(target, namespace):
        atime, mtime = (
            float(v) for v in _exec(target, namespace, pod.metadata.name, script).split()
        )
        if atime <= mtime:
            unread.append(str(pod.metadata.name))
    return unread


def check_loaded(config: SandboxConfig, info: SandboxInfo, target: KubeTarget) -> None:
    """After the app is ready: its pods read the control file, else a ``ProvisionError`` (on).

    With ``auto`` the sandbox goes on without the clock (``fake_clock`` dropped from the info).
    """
    if not info.extra.get("fake_clock") or not info.namespace:
        return
    if info.endpoint:
        _ = app_date_offset(info.endpoint + info.extra.get("health_path", "/healthz"))
    unread = unread_pods(target, info.namespace)
    if not unread:
        return
    if config.fake_clock == "auto":
        info.extra.pop("fake_clock")
        return
    raise ProvisionError(
        f"--sandbox-fake-clock=on: the app pod(s) {', '.join(unread)} never read libfaketime's "
        f"control file, so the library is not loaded in them: {NOT_PRELOADABLE}; or set it to "
        "auto/off"
    )

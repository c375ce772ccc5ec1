"""The kube backend's :class:`~.driver.ChaosDriver`: faults through the Kubernetes API.

========================  ==========================================================
fault (marker)            effect
========================  ==========================================================
evict (evict_pod)         a policy/v1 Eviction of the component's pod; removal waits for
                          the ReplicaSet's replacement to be Ready and the app to answer
                          through the endpoint (``recovery_s``, ``new_pod``)
resource_limits           the Deployment's container ``resources.limits`` patched (requests
                          lowered to fit), rollout awaited; removal puts the original
                          resources back and awaits that rollout; ``oom_kills`` counts
                          restarts whose last termination was ``OOMKilled``
db_connections            ``ALTER ROLE app CONNECTION LIMIT`` through the admin port-forward,
                          the app's sessions (``application_name=livesandbox-app``) ended
latency / network faults  toxics on the namespace's fault proxy (its ``db`` or ``app``
                          route; control API through a port-forward), see
                          :mod:`...chaos.proxied` and :mod:`.faultproxy`
kill_db                   PostgreSQL's pod deleted (1 s grace, then SIGKILL) and its
                          StatefulSet scaled to 0; after ``down_for`` back to 1. Its
                          ``emptyDir`` is new, so the app role is made again and the app's
                          Deployments restarted (they migrate their schema on start)
========================  ==========================================================

Components are Deployments, found by name or by their ``app.kubernetes.io/component`` label
(``backend`` in the demo app). Latency and network faults need the in-namespace fault proxy::

    driver = KubeChaos(info, owner="gw0::test_x")
    with driver.apply(Fault("evict", "backend")) as fault:
        ...
    print(fault.record["recovery_s"])
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from kubernetes import client as k8s
from kubernetes import utils as k8s_utils
from kubernetes.client import ApiException

from ...chaos.driver import CORE_KINDS, PROXY_KINDS, chaos_dir, db_problems, watch_recovery
from ...chaos.ledger import Ledger
from ...chaos.ledgered import Handler, LedgeredDriver
from ...chaos.markers import Fault
from ...chaos.proxied import ProxiedFaults
from ...errors import ChaosError, StartupTimeout
from ...faultproxy.client import ProxyClient
from ...info import SandboxInfo
from ...readiness import HttpReady, wait_until_ready
from . import postgres as pg
from .client import KubeTarget, connect
from .clock import clock_fault, moved_problems, reset_moved
from .faultproxy import NAME as PROXY_DEPLOYMENT
from .migrate import rerun_migration
from .names import COMPONENT_LABEL
from .portforward import pod_ready

RECOVERY_TIMEOUT_S = 120.0
OOM_STATUS_GRACE_S = 2.5
BASELINE_FILE = "kube-resources.json"  # each limited container's resources before any chaos
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
parse_quantity: Callable[[str], Any] = k8s_utils.parse_quantity


class KubeChaos(ProxiedFaults, LedgeredDriver):
    """The :class:`~.driver.ChaosDriver` of the kube backend."""

    kinds: ClassVar[frozenset[str]] = CORE_KINDS | PROXY_KINDS | {"clock"}
    proxy_missing_hint = (
        "this sandbox's namespace has no fault proxy (livesandbox_fault_proxy = false, or an "
        "attached sandbox)"
    )

    def __init__(self, info: SandboxInfo, owner: str = "") -> None:
        if not info.namespace:
            raise ChaosError("this kube sandbox has no namespace")
        self.info = info
        self.owner = owner
        self.namespace = info.namespace
        self.dir = chaos_dir(info)
        self.ledger = Ledger(self.dir)
        self._target: KubeTarget | None = None
        self.proxy = ProxyClient.from_info(info)

    def _handlers(self) -> dict[str, Handler]:
        clock = clock_fault(lambda: self.target, self.info, self.ledger, self.owner)
        return {**super()._handlers(), **self.proxy_handlers(), "clock": clock}

    @property
    def target(self) -> KubeTarget:
        """The API client, made on first use (``clean()`` before each test needs none)."""
        if self._target is None:
            kubeconfig = self.info.extra.get("kubeconfig")
            # The production guard passed when the sandbox was made; we act only in its namespace.
            self._target = connect(
                kubeconfig=Path(kubeconfig) if kubeconfig else None,
                context=self.info.extra.get("context"),
                allow_context=None,
                check_production=False,
            )
        return self._target

    # ----------------------------------------------------------------- apply

    def deployment(self, component: str) -> Any:
        """The Deployment named ``component`` or labelled ``app.kubernetes.io/component``."""
        found = self.target.apps.list_namespaced_deployment(self.namespace).items
        for item in found:
            labels = item.metadata.labels or {}
            if component in (item.metadata.name, labels.get(COMPONENT_LABEL)):
                return item
        names = ", ".join(d.metadata.name for d in found) or "none"
        raise ChaosError(
            f"component {component!r}: no Deployment of that name or {COMPONENT_LABEL} label "
            f"in {self.namespace} (it has: {names})"
        )

    def pods(self, deployment: Any) -> list[Any]:
        """The Deployment's pods (by its selector), not being deleted."""
        labels = deployment.spec.selector.match_labels or {}
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = self.target.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def _evict(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        deployment = self.deployment(fault.target)
        running = [p for p in self.pods(deployment) if p.status.phase == "Running"]
        if not running:
            raise ChaosError(f"component {fault.target!r}: no running pod to evict")
        pod = running[0].metadata.name
        body = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod, namespace=self.namespace))
        began = time.monotonic()
        try:
            self.target.core.create_namespaced_pod_eviction(pod, self.namespace, body)
        except ApiException as exc:
            raise ChaosError(f"the eviction of pod {pod} was refused: {exc.reason}") from None
        record["pod"] = pod
        seen: dict[str, str] = {}

        def ready() -> float:
            waited = time.monotonic()
            seen["new_pod"] = self._wait_replacement(deployment, pod)
            self._wait_endpoint()
            return time.monotonic() - waited

        watched = watch_recovery(ready, began)

        def undo() -> dict[str, Any]:
            return {**watched(), **seen}

        return undo

    def _wait_replacement(self, deployment: Any, old: str) -> str:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            for pod in self.pods(deployment):
                if pod.metadata.name != old and pod_ready(pod):
                    return str(pod.metadata.name)
            time.sleep(0.2)
        raise ChaosError(f"no Ready replacement for pod {old} within {RECOVERY_TIMEOUT_S:g}s")

    def _wait_endpoint(self, timeout: float = RECOVERY_TIMEOUT_S) -> float:
        if not self.info.endpoint:
            return 0.0
        path = self.info.extra.get("health_path", "/healthz")
        probe = HttpReady(self.info.endpoint + path, what="the app")
        return wait_until_ready(probe, timeout=timeout)

    # ----------------------------------------------------------------- resource limits

    def _limits(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        deployment = self.deployment(fault.target)
        name = deployment.metadata.name
        containers = deployment.spec.template.spec.containers
        index = next((i for i, c in enumerate(containers) if c.name == fault.target), 0)
        api = self.target.api
        original = api.sanitize_for_serialization(containers[index].resources) or {}
        self._save_baseline(name, index, original)
        limited = _limited(original, fault.params.get("memory"), fault.params.get("cpu"))
        undo_data = {"deployment": name, "index": index, "resources": original}
        key = self.ledger.add("resource_limits", undo_data, self.owner)
        began = time.monotonic()
        try:
            self._set_resources(name, index, limited)
            self._wait_rollout(name)
        except BaseException:
            self._undo_effect("resource_limits", undo_data)
            self.ledger.remove(key)
            raise
        record.update(
            deployment=name,
            container=containers[index].name,
            resources=limited,
            rollout_s=round(time.monotonic() - began, 4),
        )

        def undo() -> dict[str, Any]:
            effect = self._oom_effect(name)
            began = time.monotonic()
            self._set_resources(name, index, original)
            self._wait_rollout(name)
            self.ledger.remove(key)
            effect["recovery_s"] = round(time.monotonic() - began, 4)
            return effect

        return undo

    def _set_resources(self, name: str, index: int, resources: dict[str, Any]) -> None:
        patch = [
            {
                "op": "replace",
                "path": f"/spec/template/spec/containers/{index}/resources",
                "value": resources,
            }
        ]
        self.target.apps.patch_namespaced_deployment(name, self.namespace, patch)

    def _oom_effect(self, name: str) -> dict[str, Any]:
        # The kubelet reports a kill a moment later (its relist runs every second): wait for the
        # app to answer again, then give the pod status a short while to show the restart.
        self._wait_endpoint()
        deadline = time.monotonic() + OOM_STATUS_GRACE_S
        while True:
            effect = self._restarts(name)
            if effect["app_restarts"] or time.monotonic() > deadline:
                return effect
            time.sleep(0.25)

    def _restarts(self, name: str) -> dict[str, Any]:
        ooms = restarts = 0
        for pod in self.pods(self.deployment(name)):
            for status in pod.status.container_statuses or []:
                restarts += status.restart_count or 0
                last = status.last_state.terminated if status.last_state else None
                if last is not None and last.reason == "OOMKilled":
                    ooms += status.restart_count or 0
        outcome = "killed (OOM)" if ooms else ("restarted" if restarts else "not exceeded")
        return {"oom_kills": ooms, "app_restarts": restarts, "outcome": outcome}

    def _wait_rollout(self, name: str, timeout: float = RECOVERY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            d = self.target.apps.read_namespaced_deployment(name, self.namespace)
            s, wanted = d.status, d.spec.replicas or 0
            if (
                (s.observed_generation or 0) >= (d.metadata.generation or 0)
                and (s.updated_replicas or 0) == wanted
                and (s.replicas or 0) == wanted
                and (s.available_replicas or 0) == wanted
            ):
                break
            if time.monotonic() > deadline:
                raise ChaosError(f"Deployment {name} did not finish its rollout in {timeout:g}s")
            time.sleep(0.25)
        self._wait_endpoint(max(deadline - time.monotonic(), 1.0))

    def _save_baseline(self, name: str, index: int, resources: dict[str, Any]) -> None:
        path = self.dir / BASELINE_FILE
        saved = json.loads(path.read_text()) if path.exists() else {}
        if f"{name}/{index}" not in saved:
            saved[f"{name}/{index}"] = resources
            tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(saved))
            tmp.replace(path)

    # ----------------------------------------------------------------- database

    def _kill_db(self, fault: Fault, record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        if self.info.db is None or not self.info.db.admin_password:
            raise ChaosError("kill_db: this sandbox's PostgreSQL is not ours (--sandbox-db-dsn)")
        return super()._kill_db(fault, record)

    def _stop_db(self) -> dict[str, Any]:
        began = time.monotonic()
        apps, core = self.target.apps, self.target.core
        try:
            # Not grace 0: that only removes the object, the server may run on for a while.
            # With 1 s the kubelet SIGKILLs it and the object goes once it is really gone.
            core.delete_namespaced_pod(f"{pg.NAME}-0", self.namespace, grace_period_seconds=1)
        except ApiException as exc:
            if exc.status != 404:
                raise
        # Scaled down while the pod is still terminating, so no replacement is made meanwhile.
        apps.patch_namespaced_stateful_set_scale(pg.NAME, self.namespace, {"spec": {"replicas": 0}})
        while core.list_namespaced_pod(self.namespace, label_selector=pg.SELECTOR).items:
            if time.monotonic() - began > 60:
                raise ChaosError("the PostgreSQL pod did not go away within 60s")
            time.sleep(0.1)
        return {"stop_s": round(time.monotonic() - began, 4)}

    def _start_db(self) -> dict[str, Any]:
        """Scale PostgreSQL back to 1, make the app role again, restart the app's Deployments."""
        assert self.info.db is not None
        db = self.info.db
        began = time.monotonic()
        self.target.apps.patch_namespaced_stateful_set_scale(
            pg.NAME, self.namespace, {"spec": {"replicas": 1}}
        )
        deadline = began + RECOVERY_TIMEOUT_S
        while True:
            try:
                # The admin port-forward picks the new pod per connection.
                pg.create_app_role(db.url(admin=True), db.user, db.password, db.dbname)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise ChaosError(f"PostgreSQL did not accept connections: {exc}") from None
                time.sleep(0.25)
        start_s = time.monotonic() - began
        job = self.info.extra.get("migrate_job")
        if job:  # --sandbox-migrate-cmd: the new, empty database is migrated again first
            failed = rerun_migration(self.target, self.namespace, job, RECOVERY_TIMEOUT_S)
            if failed:
                raise ChaosError(f"PostgreSQL came back but could not be migrated: {failed}")
        # A new, empty data folder: the apps migrate their schema when they start.
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        found = self.target.apps.list_namespaced_deployment(self.namespace).items
        # Not the fault proxy: its upstreams are ClusterIPs, and the tests' client goes through it.
        names = [d.metadata.name for d in found if d.metadata.name != PROXY_DEPLOYMENT]
        for name in names:
            patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
            self.target.apps.patch_namespaced_deployment(name, self.namespace, patch)
        for name in names:
            self._wait_rollout(name)
        return {
            "start_s": round(start_s, 4),
            "recovery_s": round(time.monotonic() - began, 4),
            "restarted": names,
        }

    # ----------------------------------------------------------------- repair, baseline

    def repair(self, *, only_stale: bool) -> list[str]:
        """Undo recorded faults (stale ones, or all) and clear stray toxics; say what was done."""
        done = super().repair(only_stale=only_stale)
        if not only_stale and self.proxy is not None and self.proxy.clear():
            done.append("removed stray toxics from the fault proxy")
        return done + ([] if only_stale else reset_moved(self.target, self.info))

    def _undo_effect(self, kind: str, undo: dict[str, Any]) -> None:
        if kind == "toxic":
            self.undo_toxic(undo)
        elif kind == "clock":
            reset_moved(self.target, self.info, always=True)
        elif kind == "resource_limits" and undo:
            self._set_resources(undo["deployment"], int(undo["index"]), undo["resources"])
            self._wait_rollout(undo["deployment"])

    def baseline_problems(self, timeout: float = 30.0) -> list[str]:
        """Ledger empty, Deployments available with their original resources, DB, app ready."""
        problems: list[str] = []
        if not self.ledger.empty():
            kinds = sorted({e["kind"] for e in self.ledger.entries().values()})
            problems.append(f"faults still recorded as active: {', '.join(kinds)}")
        problems.extend(self.toxic_problems())
        problems.extend(moved_problems(self.target, self.info))
        path = self.dir / BASELINE_FILE
        saved = json.loads(path.read_text()) if path.exists() else {}
        deadline = time.monotonic() + timeout
        for d in self.target.apps.list_namespaced_deployment(self.namespace).items:
            name = d.metadata.name
            for index, container in enumerate(d.spec.template.spec.containers):
                now = self.target.api.sanitize_for_serialization(container.resources) or {}
                if f"{name}/{index}" in saved and now != saved[f"{name}/{index}"]:
                    problems.append(f"Deployment {name} still runs with resources {now}")
            try:
                self._wait_rollout(name, max(deadline - time.monotonic(), 1.0))
            except (ChaosError, StartupTimeout) as exc:
                problems.append(str(exc).splitlines()[0])
        problems.extend(db_problems(self.info, max(deadline - time.monotonic(), 1.0)))
        try:
            self._wait_endpoint(max(deadline - time.monotonic(), 1.0))
        except StartupTimeout as exc:
            problems.append(f"the app is not ready again: {str(exc).splitlines()[0]}")
        return problems


def _limited(original: dict[str, Any], memory: int | None, cpu: float | None) -> dict[str, Any]:
    """``original`` with the new limits; requests lowered where they would exceed them."""
    limits = dict(original.get("limits") or {})
    requests = dict(original.get("requests") or {})
    for key, value, text in (
        ("memory", memory, f"{memory}"),
        ("cpu", cpu, f"{round((cpu or 0) * 1000)}m"),
    ):
        if value is None:
            continue
        limits[key] = text
        if key in requests and parse_quantity(requests[key]) > parse_quantity(text):
            requests[key] = text
    return {**original, "limits": limits, "requests": requests}

"""Waiting for workloads in a namespace, failing fast with the reason when pods cannot start.

A :class:`~pytest_livesandbox.readiness.WaitStrategy`, so it shares the deadline loop::

    wait_until_ready(
        RolloutReady(target, "sandbox-3f9c", [("Deployment", "backend")], probe=http.check),
        timeout=30,
    )

Fatal pod states (ErrImageNeverPull, ImagePullBackOff, a crash, OOMKilled) raise at once:
:class:`~pytest_livesandbox.errors.AppCrashed` for a container that exits,
:class:`~pytest_livesandbox.errors.RolloutFailed` for the rest; a missed deadline raises
``StartupTimeout`` with the same report (pod states, events, log tails, hint).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes.client import ApiException

from ...errors import AppCrashed, RolloutFailed
from . import diagnose
from .client import KubeTarget

# ErrImagePull / CreateContainerConfigError may clear up by themselves; after this they count.
SLOW_FATAL_AFTER = 8.0


class RolloutReady:
    """Ready when ``probe()`` passes (if given) and every workload has its replicas ready.

    ``probed`` names the workload ``probe`` speaks for: its pods need only be running, since the
    probe itself proves they answer (saves a readiness-probe period). With ``probe_selector``
    (``k=v,...``) the probe waits for a pod of those labels whose containers all run.
    """

    def __init__(
        self,
        target: KubeTarget,
        namespace: str,
        workloads: Sequence[tuple[str, str]],
        *,
        what: str,
        selector: str | None = None,
        probe: Callable[[], bool] | None = None,
        probe_hint: Callable[[], str] | None = None,
        probed: tuple[str, str] | None = None,
        probe_selector: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.namespace = namespace
        self.workloads = list(workloads)
        self.what = what
        self.selector = selector
        self.probe = probe
        self.probe_hint = probe_hint
        self.probed = probed
        self.probe_labels = _labels(probe_selector)
        self.secrets = secrets
        self._began = time.monotonic()
        self._pods: list[Any] = []

    def pods(self) -> list[Any]:
        """Pods of this rollout (all pods of the namespace without a selector)."""
        kwargs: dict[str, Any] = {"label_selector": self.selector} if self.selector else {}
        return list(
            self.target.core.list_namespaced_pod(
                self.namespace, _request_timeout=10, **kwargs
            ).items
        )

    def check(self) -> bool:
        """One look: raise on a fatal pod state, else say whether everything is ready."""
        self._pods = self.pods()
        slow_ok = time.monotonic() - self._began < SLOW_FATAL_AFTER
        failures = [f for f in (diagnose.pod_failure(p, slow_ok) for p in self._pods) if f]
        if failures:
            kind, text = failures[0]
            details = diagnose.report(
                self.target.core,
                self.namespace,
                self._pods,
                kinds=[k for k, _ in failures],
                secrets=self.secrets,
            )
            error = AppCrashed if kind in ("crash", "oom") else RolloutFailed
            raise error(f"{self.what} cannot start: {text}\n{details}")
        if self.probe is not None:
            if not any(self._probe_target(p) for p in self._pods) or not self.probe():
                return False
        return all(self._ready(kind, name) for kind, name in self.workloads)

    def _probe_target(self, pod: Any) -> bool:
        # Probe only once a pod behind the endpoint runs its containers: a port-forward to a pod
        # still in its init containers fails only after a round trip through the API server.
        if not _running(pod):
            return False
        if self.probe_labels is None:
            return True
        labels = pod.metadata.labels or {}
        if any(labels.get(k) != v for k, v in self.probe_labels.items()):
            return False
        statuses = pod.status.container_statuses or []
        return bool(statuses) and all(cs.state and cs.state.running for cs in statuses)

    def _ready(self, kind: str, name: str) -> bool:
        if (kind, name) == self.probed:
            return True
        apps = self.target.apps
        try:
            if kind == "Deployment":
                obj: Any = apps.read_namespaced_deployment_status(name, self.namespace)
                return _replicas_ready(obj.spec.replicas, obj.status.ready_replicas, obj)
            if kind == "StatefulSet":
                obj = apps.read_namespaced_stateful_set_status(name, self.namespace)
                return _replicas_ready(obj.spec.replicas, obj.status.ready_replicas, obj)
            if kind == "DaemonSet":
                obj = apps.read_namespaced_daemon_set_status(name, self.namespace)
                wanted = obj.status.desired_number_scheduled or 0
                return bool(wanted) and (obj.status.number_ready or 0) >= wanted
            if kind == "ReplicaSet":
                obj = apps.read_namespaced_replica_set_status(name, self.namespace)
                return _replicas_ready(obj.spec.replicas, obj.status.ready_replicas, obj)
        except ApiException:
            return False
        return True

    def hint(self) -> str:
        """Everything known about the pods when the deadline passed."""
        try:
            pods = self.pods()
        except Exception:
            pods = self._pods
        text = diagnose.report(self.target.core, self.namespace, pods, secrets=self.secrets)
        if self.probe_hint is not None:
            text = f"{text}\n{self.probe_hint()}"
        return text + (
            "\nHint: raise --sandbox-startup-timeout if the cluster is only slow (pulling images "
            "takes time the first run)."
        )


def _replicas_ready(wanted: int | None, ready: int | None, obj: Any) -> bool:
    generation_seen = (obj.status.observed_generation or 0) >= (obj.metadata.generation or 0)
    return generation_seen and (ready or 0) >= (1 if wanted is None else wanted)


def _labels(selector: str | None) -> dict[str, str] | None:
    """``a=b,c=d`` as a dict (the equality selectors :func:`..manifests.endpoint_target` makes).

    >>> _labels("app=web,tier=api"), _labels(None)
    ({'app': 'web', 'tier': 'api'}, None)
    """
    if not selector:
        return None
    return dict(part.split("=", 1) for part in selector.split(",") if "=" in part)


def _running(pod: Any) -> bool:
    return bool(pod.status and pod.status.phase == "Running")

"""A warm sandbox rolled to a new build: only the changed images change, old pods go at once.

With ``--sandbox-reuse`` and ``--sandbox-build`` a changed source keeps the reuse key (it names
the build's context, Dockerfile and args, not the content), so the next run claims the warm
namespace (PostgreSQL up, the database reset) and only the workloads of rebuilt components
change::

    rolls = plan_roll(objs, changed=[("backend", "reg/app@sha256:...")])
    for roll in rolls:
        roll.apply(core, namespace)            # one strategic-merge patch per workload
    wait_until_ready(RolledToBuild(target, namespace, rolls, probe=...), timeout=30)

A roll patches the built containers' images (digests), drops :mod:`.dbwait`'s init container
(the database answers already) and gives a Deployment a surge and unavailability of 100%: the
new pods start at once and every old pod is scaled down in the same step, its grace cut to a
second; the wait ends only once the old pods are gone, so no old image answers a test. Only
Deployments and StatefulSets roll (:func:`rollable`); any other built workload keeps the build's
content in the reuse key, so a change gets a new sandbox.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiException

from ...readiness import answers
from . import manifests as mf
from .dbwait import INIT_NAME
from .portforward import pod_ready
from .rollout import RolloutReady

ROLLABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
GRACE_S = 1  # an old pod's grace: its app gets SIGTERM, then SIGKILL a second later
_ALL_AT_ONCE = {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "100%"},
}


@dataclass(frozen=True)
class Roll:
    """One workload's patch: which containers get which image, how many new pods to wait for."""

    kind: str
    name: str
    images: tuple[tuple[str, str], ...]  # (container, image)
    selector: tuple[tuple[str, str], ...]  # the workload's matchLabels
    replicas: int

    def body(self) -> dict[str, Any]:
        """The strategic-merge patch (see the module docstring)."""
        pod = {
            "initContainers": [{"name": INIT_NAME, "$patch": "delete"}],
            "containers": [
                {"name": c, "image": image, "imagePullPolicy": "IfNotPresent"}
                for c, image in self.images
            ],
        }
        spec: dict[str, Any] = {"template": {"spec": pod}}
        if self.kind == "Deployment":
            spec["strategy"] = _ALL_AT_ONCE
        return {"spec": spec}

    def apply(self, core: Any, namespace: str) -> None:
        """Send the patch (``core`` is a :class:`~.coreapi.CoreApi`: no apps/v1 import)."""
        path = f"/apis/apps/v1/namespaces/{namespace}/{ROLLABLE[self.kind]}/{self.name}"
        core.request("PATCH", path, self.body())

    def selects(self, pod: Any) -> bool:
        """True for the pods of this workload."""
        labels = pod.metadata.labels or {}
        return all(labels.get(k) == v for k, v in self.selector)

    def runs_new(self, pod: Any) -> bool:
        """True when every patched container of ``pod`` runs its new image."""
        have = {c.name: c.image for c in pod.spec.containers or []}
        return all(have.get(c) == image for c, image in self.images)


def rollable(objs: Sequence[dict[str, Any]], components: Sequence[str]) -> bool:
    """True when every workload of a built component is a Deployment or StatefulSet."""
    for obj in objs:
        if mf.workload_pod_spec(obj) is None or not mf.components(obj) & set(components):
            continue
        if obj.get("kind") not in ROLLABLE:
            return False
    return True


def plan_roll(objs: Sequence[dict[str, Any]], changed: Sequence[tuple[str, str]]) -> list[Roll]:
    """The patches that put the ``changed`` ``(component, ref)`` images into ``objs``' workloads.

    ``objs`` are the app's manifests as provisioned (before any image override).

    >>> deploy = {"kind": "Deployment", "metadata": {"name": "backend"}, "spec": {"selector": {
    ...     "matchLabels": {"app": "b"}}, "template": {"spec": {"containers": [
    ...     {"name": "backend", "image": "app:dev"}]}}}}
    >>> [(r.kind, r.name, r.images) for r in plan_roll([deploy], [("backend", "r/a@sha256:1")])]
    [('Deployment', 'backend', (('backend', 'r/a@sha256:1'),))]
    """
    rolls = []
    for obj in objs:
        pod = mf.workload_pod_spec(obj)
        if pod is None or obj.get("kind") not in ROLLABLE:
            continue
        before = {c.get("name"): c.get("image") for c in pod.get("containers") or []}
        after = copy.deepcopy(obj)
        mf.override_images([after], changed)
        images = tuple(
            (str(c["name"]), str(c["image"]))
            for c in (mf.workload_pod_spec(after) or {}).get("containers") or []
            if before.get(c.get("name")) != c.get("image")
        )
        if not images:
            continue
        spec = obj.get("spec") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        replicas = spec.get("replicas")
        rolls.append(
            Roll(
                kind=str(obj["kind"]),
                name=str(obj["metadata"]["name"]),
                images=images,
                selector=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                replicas=1 if replicas is None else int(replicas),
            )
        )
    return rolls


class RolledToBuild(RolloutReady):
    """Ready when every rolled workload runs only new pods, ``replicas`` of them Ready.

    A terminating old pod gets its grace cut to :data:`GRACE_S` and counts until the API server
    drops it, which happens only once the kubelet saw its containers stop: so when the probe
    passes, no old image can answer. Terminating pods are left out of the crash checks; a new
    pod that cannot start fails as in a first rollout.
    """

    def __init__(self, target: Any, namespace: str, rolls: Sequence[Roll], **kwargs: Any) -> None:
        super().__init__(target, namespace, [(r.kind, r.name) for r in rolls], **kwargs)
        self.rolls = {(r.kind, r.name): r for r in rolls}
        self._hurried: set[str] = set()
        self._leaving: list[Any] = []
        self._answers = self.probe
        if self.probe is not None:  # no probe of an old pod: it may hang while it terminates
            self.probe = self._probe_when_rolled

    def _probe_when_rolled(self) -> bool:
        rolled = all(self._ready(kind, name) for kind, name in self.rolls)
        return rolled and self._answers is not None and self._answers()

    def pods(self) -> list[Any]:
        """The namespace's pods that are not terminating (those are in ``_leaving``)."""
        live, self._leaving = [], []
        for pod in super().pods():
            if pod.metadata.deletion_timestamp is None:
                live.append(pod)
            elif any(r.selects(pod) for r in self.rolls.values()):
                self._leaving.append(pod)
                self._hurry(str(pod.metadata.name))
        return live

    def _hurry(self, name: str) -> None:
        if name in self._hurried:
            return
        self._hurried.add(name)
        try:  # a shorter grace for a pod already terminating: the app gets SIGTERM, then KILL
            self.target.core.delete_namespaced_pod(
                name, self.namespace, grace_period_seconds=GRACE_S
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _ready(self, kind: str, name: str) -> bool:
        roll = self.rolls[(kind, name)]
        if any(roll.selects(p) for p in self._leaving):
            return False
        mine = [p for p in self._pods if roll.selects(p)]
        if any(not roll.runs_new(p) for p in mine):
            return False
        return sum(1 for p in mine if pod_ready(p)) >= roll.replicas


class GrowingProbe:
    """``GET url`` answered below 400, each try waiting longer (0.25 s, x1.5, up to 3 s).

    Right after a roll a Service may still send a connection to the old pod's address for a
    moment (kube-proxy syncs at most once a second): a short first timeout retries soon
    instead of hanging, and a slow health path still gets its time.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.timeout = 0.25

    def __call__(self) -> bool:
        """One try; the next one waits longer."""
        ok = answers(self.url, timeout=self.timeout)
        self.timeout = min(self.timeout * 1.5, 3.0)
        return ok

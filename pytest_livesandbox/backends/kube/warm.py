"""Leases and warm sandboxes of the kube backends: annotations, claims by resourceVersion.

The lease lives in the namespace's annotations (``livesandbox/lease-state``, ``-holder``,
``-expires-at``), the reuse key in its label ``livesandbox/reuse-key``. Every change is a patch
that carries the ``resourceVersion`` the change was decided on, so the API server refuses it
(409) if anything changed in between: of two runs claiming one warm namespace, one wins::

    renew(core, namespace, run_id, until)             # the running pytest, every few seconds
    claim_namespace(core, key, backend, run_id, until)   # -> NamespaceRecord or None
    hand_back(core, namespace, key, until, app)       # end of a --sandbox-reuse run: warm

A warm namespace remembers where its app's port-forward goes (``livesandbox/app-forward``), so
a claim reads two Secrets and opens two port-forwards, nothing more: no listing of Services and
Deployments (and no import of the apps/v1 client, a large part of a fresh process's claim).

With ``--sandbox-build`` the build starts before the claim, and the namespace remembers the
digests it runs (``livesandbox/digests``): a changed source rolls only the rebuilt workloads
(:mod:`.rollbuild`) once the database is reset; an unchanged one neither builds nor rolls.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kubernetes.client import ApiException

from ...config import SandboxConfig
from ...errors import StartupTimeout
from ...info import SandboxInfo
from ...lease import Lease
from ...readiness import HttpReady, wait_until_ready
from . import manifests as mf
from . import postgres as pg
from .attach import Forward, attach_namespace, attached_database
from .images import start_build
from .names import BACKEND_LABEL, REUSE_KEY_LABEL, expires_at, lease_annotations
from .namespace import NamespaceRecord, list_sandboxes, record_of
from .rollbuild import GrowingProbe, RolledToBuild, plan_roll, rollable

if TYPE_CHECKING:
    from ...images.pipeline import BackgroundBuild
    from .artifacts import Collector
    from .client import KubeTarget
    from .portforward import PortForwarder

RESTARTED_AT = "livesandbox/restarted-at"
APP_FORWARD = "livesandbox/app-forward"  # JSON [selector, port] of the app's port-forward
DIGESTS = "livesandbox/digests"  # JSON {component: REPO@sha256:...} the namespace runs
ATTACH_PROBE_S = 3.0  # how long a claimed sandbox's app may take to answer before a restart


def _patch(core: Any, name: str, resource_version: str | None, metadata: dict[str, Any]) -> bool:
    """Merge-patch the namespace's metadata; False when ``resource_version`` is stale (409)."""
    if resource_version:
        metadata = {**metadata, "resourceVersion": resource_version}
    try:
        core.patch_namespace(name, {"metadata": metadata})
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def renew(core: Any, name: str, holder: str, until: float) -> bool:
    """Extend ``holder``'s lease on namespace ``name`` (never one another run claimed)."""
    current = record_of(core.read_namespace(name))
    if current.lease is not None and current.lease.holder != holder:
        return False
    state = current.lease.state if current.lease is not None else "held"
    lease = Lease(state, holder, until)
    return _patch(core, name, current.resource_version, {"annotations": lease_annotations(lease)})


def _claimable(ns: NamespaceRecord) -> bool:
    if ns.phase != "Active" or ns.lease is None or ns.expired:
        return False
    if ns.lease.state == "warm":
        return not ns.lease.lapsed
    return ns.lease.lapsed  # held by a run whose lease lapsed (killed): the next run takes it


def claim_namespace(
    core: Any, key: str, backend: str, run_id: str, until: float
) -> NamespaceRecord | None:
    """Claim a warm namespace of ``key`` for ``run_id`` (compare-and-set on resourceVersion)."""
    lease = Lease("held", run_id, until, key=key)
    for ns in list_sandboxes(core, f"{REUSE_KEY_LABEL}={key}"):
        if ns.labels.get(BACKEND_LABEL, "kube") != backend or not _claimable(ns):
            continue
        if _patch(core, ns.name, ns.resource_version, {"annotations": lease_annotations(lease)}):
            return ns
    return None


def hand_back(
    core: Any,
    name: str,
    key: str,
    until: float,
    app: tuple[str, int | str] | None = None,
    digests: dict[str, str] | None = None,
) -> None:
    """Mark the namespace warm for ``key`` (kept, without one) until ``until`` (the run ends).

    ``app``: the app's port-forward target ``(selector, port)``, for the next run's claim;
    ``digests``: the built images it runs (``--sandbox-build``), to tell a changed build.
    """
    lease = Lease("warm" if key else "kept", "", until, key=key)
    labels = {REUSE_KEY_LABEL: key} if key else {}
    annotations = lease_annotations(lease)
    if app is not None:
        annotations[APP_FORWARD] = json.dumps(list(app))
    if digests:
        annotations[DIGESTS] = json.dumps(digests, sort_keys=True)
    _patch(core, name, None, {"labels": labels, "annotations": annotations})


def app_forward(ns: NamespaceRecord) -> tuple[str, int | str] | None:
    """The app's port-forward target a warm namespace remembers (``None``: not recorded)."""
    try:
        selector, port = json.loads(ns.annotations[APP_FORWARD])
    except (KeyError, ValueError, TypeError):
        return None
    return str(selector), port if isinstance(port, int) else str(port)


def deployed_digests(ns: NamespaceRecord) -> dict[str, str]:
    """The built images a warm namespace runs (``{}``: none recorded, roll whatever is built)."""
    try:
        digests = json.loads(ns.annotations[DIGESTS])
    except (KeyError, ValueError, TypeError):
        return {}
    return {str(k): str(v) for k, v in digests.items()} if isinstance(digests, dict) else {}


def restart_deployments(apps: Any, namespace: str) -> list[str]:
    """Roll every Deployment of the namespace (``kubectl rollout restart``); their names."""
    names = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for deployment in apps.list_namespaced_deployment(namespace).items:
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        apps.patch_namespaced_deployment(deployment.metadata.name, namespace, body)
        names.append(str(deployment.metadata.name))
    return names


def manifests_digest(source: Path) -> str:
    """A digest of every file under ``source`` (a manifests folder or file): its content counts."""
    digest = hashlib.sha256()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for path in files:
        digest.update(str(path.relative_to(source) if source.is_dir() else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class WarmNamespaces:
    """The lease and reuse half of the kube backends' protocol (mixed into ``KubeBackend``)."""

    name: ClassVar[str]
    _targets: dict[str, KubeTarget]
    _forwarders: dict[str, list[PortForwarder]]
    _forward: Forward
    _artifacts: Collector
    _builds: dict[str, BackgroundBuild | None]  # run's early build: claim's, else provision's
    demo_manifests: ClassVar[Path]

    def connect(self, config: SandboxConfig) -> KubeTarget:
        """The cluster (``KubeBackend.connect``)."""
        raise NotImplementedError

    def _app_objects(
        self, config: SandboxConfig, info: SandboxInfo, namespace: str, built: list[str]
    ) -> list[dict[str, Any]]:
        """The app's manifests for ``namespace`` (``KubeBackend._app_objects``)."""
        raise NotImplementedError

    def renew_lease(self, info: SandboxInfo, until: float) -> None:
        """Patch the namespace's lease annotations (never an attached sandbox's)."""
        target = self._targets.get(info.id)
        if target is None or info.namespace is None or info.extra.get("attached"):
            return
        renew(target.core, info.namespace, info.run_id, until)

    def reuse_parts(self, config: SandboxConfig) -> dict[str, str]:
        """The PostgreSQL image and a digest of the manifests' contents."""
        source = config.manifests or self.demo_manifests
        return {
            "postgres_image": dict(config.image).get(pg.COMPONENT, pg.DEFAULT_IMAGE),
            "manifests": manifests_digest(source) if source.exists() else "",
        }

    def rolls_builds(self, config: SandboxConfig) -> bool:
        """Yes, unless a migration, Argo CD or a workload kind stands in the way.

        Not with ``--sandbox-migrate-cmd`` (the migration runs first), the argocd deployer (it
        owns the workloads), or a built workload that is neither a Deployment nor a StatefulSet.
        """
        if not config.build:
            return True
        source = config.manifests or self.demo_manifests
        if config.migrate_cmd or config.deployer == "argocd" or not source.exists():
            return False
        return rollable(mf.load_manifests(source), [component for component, _, _ in config.build])

    def claim_warm(
        self, config: SandboxConfig, key: str, run_id: str, until: float
    ) -> SandboxInfo | None:
        """Claim a warm namespace of ``key``; port-forward to it and read its Secrets."""
        if config.attach:
            return None
        # Built while the claim and the reset run; provisioning takes it over if none is warm.
        self._builds[run_id] = start_build(config)
        target = self.connect(config)
        ns = claim_namespace(target.core, key, self.name, run_id, until)
        if ns is None:
            target.close()
            return None
        info = SandboxInfo(
            id=ns.sandbox_id,
            backend=self.name,
            run_id=run_id,
            owner=ns.owner,
            created_at=ns.created_at,
        )
        self._targets[info.id] = target
        target.record(info, config.namespace_prefix)
        info.extra["expires_at"] = expires_at(0, now=ns.expires_at) if ns.expires_at else None
        deadline = time.monotonic() + ATTACH_PROBE_S
        try:
            app = app_forward(ns)
            if app is None or config.url_template:  # a namespace handed back before it was kept
                attach_namespace(
                    replace(config, attach=ns.name), info, target, deadline, self._forward
                )
            else:
                self._reattach(config, info, target, ns.name, app, deadline)
        except StartupTimeout:
            info.extra["app_unhealthy"] = True
        info.extra.update(attached=False, created_namespace=True)  # ours: teardown deletes it
        info.extra["warm_digests"] = deployed_digests(ns)
        return info

    def _reattach(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        target: KubeTarget,
        namespace: str,
        app: tuple[str, int | str],
        deadline: float,
    ) -> None:
        """The claim's attach: Secrets, the database's and the app's port-forwards, one probe."""
        info.namespace = namespace
        info.db = attached_database(config, info, target, namespace, self._forward)
        info.endpoint = self._forward(target, info, namespace, app[0], app[1], "app").url
        probe = HttpReady(info.endpoint + config.health_path, what=f"the app in {namespace}")
        wait_until_ready(probe, timeout=max(deadline - time.monotonic(), 0.1))

    def keep_warm(self, info: SandboxInfo, until: float) -> None:
        """Stop the port-forwards; mark the namespace warm for its reuse key (or kept)."""
        app: tuple[str, int | str] | None = None
        self._builds.pop(info.run_id, None)
        for forwarder in self._forwarders.pop(info.id, []):
            if forwarder.name == "app":
                app = (forwarder.selector, forwarder.remote_port)
            forwarder.close()
        self._artifacts.stop(info)
        target = self._targets.pop(info.id, None)
        if target is None or info.namespace is None or info.extra.get("attached"):
            return  # an attached namespace is not ours to lease
        try:
            key = str(info.extra.get("reuse_key") or "")
            hand_back(target.core, info.namespace, key, until, app, info.extra.get("digests"))
        finally:
            target.close()

    def heal(self, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
        """Roll a changed build in; else restart the app only if its health check failed."""
        pending = self._builds.pop(info.run_id, None)
        warm_digests = info.extra.pop("warm_digests", {})
        if pending is not None and info.namespace is not None:
            rolled = self._roll_build(info, config, pending, warm_digests)
            if rolled:
                return rolled
        if not info.extra.pop("app_unhealthy", False) or info.namespace is None:
            return {"app_restarted": False}
        began = time.monotonic()
        restarted = restart_deployments(self._targets[info.id].apps, info.namespace)
        if info.endpoint:
            probe = HttpReady(info.endpoint + config.health_path, what="the restarted app")
            wait_until_ready(probe, timeout=config.startup_timeout)
        return {"app_restarted": restarted, "app_restart_s": round(time.monotonic() - began, 4)}

    def _roll_build(
        self,
        info: SandboxInfo,
        config: SandboxConfig,
        pending: BackgroundBuild,
        deployed: dict[str, str],
    ) -> dict[str, Any]:
        """Wait for the run's build; roll the workloads whose digest changed (``{}``: none)."""
        result = pending.result()
        result.record(info)
        changed = [(c, ref) for c, ref in result.refs() if deployed.get(c) != ref]
        if not changed:
            return {}
        began = time.monotonic()
        namespace = str(info.namespace)
        target = self._targets[info.id]
        objs = self._app_objects(config, info, namespace, [c for c, _ in changed])
        rolls = plan_roll(objs, changed)
        for roll in rolls:
            roll.apply(target.core, namespace)
        health = info.endpoint + config.health_path if info.endpoint else ""
        wait_until_ready(
            RolledToBuild(
                target,
                namespace,
                rolls,
                what=f"the new build in namespace {namespace}",
                probe=GrowingProbe(health) if health else None,
                secrets=info.secret_values(),
                health_path=config.health_path,
            ),
            timeout=config.startup_timeout,
            interval=0.05,
            max_interval=0.1,
        )
        info.extra.pop("app_unhealthy", None)
        info.timings["roll_s"] = round(time.monotonic() - began, 4)
        return {
            "app_restarted": False,
            "app_rolled": [f"{roll.kind}/{roll.name}" for roll in rolls],
        }

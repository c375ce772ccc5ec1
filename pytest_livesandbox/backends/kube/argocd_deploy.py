"""The ``argocd`` deployer's step of the kube bring-up: Application, sync, health, live objects.

Called by the kube backend once the namespace, PostgreSQL and the ``livesandbox-db`` Secret are
there, in place of creating the manifests itself::

    objs = sync_with_argocd(target, config, info, labels, built, proxy, began, deadline)
    # info.timings: sync_s (Application created -> sync succeeded), synced_s, healthy_s
    # info.extra:   argocd_application "argocd/<name>", synced_revision "<commit sha>"

The returned objects (the synced Services and workloads, read back from the cluster) give the
kube backend its endpoint and the workloads it waits for, as the manifests do for ``apply``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ...config import SandboxConfig
from ...errors import ConfigError
from ...info import SandboxInfo
from ...readiness import wait_until_ready
from . import argocd
from . import faultproxy as fp
from . import manifests as mf
from . import postgres as pg
from .client import KubeTarget
from .names import ARGOCD_APP_ANNOTATION as ANNOTATION
from .proxy_setup import NamespaceProxy, point_app_route

__all__ = [
    "ANNOTATION",
    "app_overrides",
    "delete_synced_app",
    "deployer_problems",
    "sync_with_argocd",
]


def deployer_problems(config: SandboxConfig) -> list[str]:
    """What ``--sandbox-deployer=argocd`` needs from the other settings (no I/O)."""
    if config.deployer != "argocd" or config.attach:
        return []
    problems = []
    if not config.git_repo:
        problems.append(
            "--sandbox-deployer=argocd needs --sandbox-git-repo (ini livesandbox_git_repo): the "
            "Git repository Argo CD deploys from, e.g. https://git.example.com/team/app.git (on "
            "our CI cluster `cluster/argocd-up` prints `argocd: git://...`)"
        )
    if config.manifests is not None:
        problems.append(
            "--sandbox-manifests with --sandbox-deployer=argocd: Argo CD reads the manifests "
            "from Git; give their folder in the repository with --sandbox-git-path and drop "
            "--sandbox-manifests"
        )
    if config.migrate_cmd:
        problems.append(
            "--sandbox-migrate-cmd with --sandbox-deployer=argocd: run the migration as an "
            "Argo CD PreSync hook Job in your manifests (argocd.argoproj.io/hook: PreSync), "
            "so it runs as in production; drop --sandbox-migrate-cmd"
        )
    if config.reuse:
        problems.append(
            "--sandbox-reuse with --sandbox-deployer=argocd: warm sandboxes are not kept for "
            "Argo CD deployments yet (the reuse key does not know the Git revision); drop "
            "--sandbox-reuse"
        )
    return problems


def app_overrides(config: SandboxConfig) -> list[tuple[str, str]]:
    """``--sandbox-image`` entries for the app's own components (not PostgreSQL, not the proxy)."""
    return [(c, i) for c, i in config.image if c not in (pg.COMPONENT, fp.COMPONENT)]


def sync_with_argocd(
    target: KubeTarget,
    config: SandboxConfig,
    info: SandboxInfo,
    labels: dict[str, str],
    built: Sequence[tuple[str, str]],
    proxy: NamespaceProxy | None,
    began: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """Create the Application, wait for Synced + Healthy; the live Services and workloads.

    The fault proxy's pending app route is pointed at the synced app's pods.
    """
    if not config.git_repo:  # deployer_problems refuses this at configure
        raise ConfigError("--sandbox-deployer=argocd needs --sandbox-git-repo")
    assert info.namespace is not None
    namespace = info.namespace
    patches = [
        *argocd.image_patches(app_overrides(config)),
        *argocd.image_patches(built, pull_policy="IfNotPresent"),
    ]
    name = namespace
    body = argocd.application_body(name, labels, config, namespace, patches)
    info.extra["argocd_application"] = f"{config.argocd_namespace}/{name}"
    info.extra["git"] = {
        "repo": config.git_repo,
        "revision": config.git_revision,
        "path": config.git_path,
    }
    created = time.monotonic()
    argocd.create_application(target, config.argocd_namespace, body)
    secrets = [s for s in (info.db.password, info.db.admin_password) if s] if info.db else []
    waiter = argocd.SyncedHealthy(target, config.argocd_namespace, name, namespace, secrets)
    wait_until_ready(
        waiter, timeout=max(deadline - time.monotonic(), 0.1), interval=0.1, max_interval=0.5
    )
    synced = waiter.synced_at or time.monotonic()
    healthy = waiter.healthy_at or time.monotonic()
    info.timings["sync_s"] = round(synced - created, 4)
    info.timings["synced_s"] = round(synced - began, 4)
    info.timings["healthy_s"] = round(healthy - began, 4)
    info.extra["synced_revision"] = waiter.revision
    app = argocd.read_application(target, config.argocd_namespace, name)
    objs = argocd.live_objects(target, app, namespace)
    known = mf.known_components(objs)
    unknown = [c for c, _ in [*app_overrides(config), *built] if c not in known]
    if unknown:  # a patch that matched nothing: the image given never ran
        raise ConfigError(
            f"--sandbox-image/--sandbox-build {', '.join(unknown)}=...: no workload Argo CD "
            f"synced from {config.git_repo} ({config.git_path}) has that "
            f"app.kubernetes.io/component label or name; known: {', '.join(known) or 'none'}"
        )
    point_app_route(target, namespace, proxy, objs)
    return objs


def delete_synced_app(target: KubeTarget, info: SandboxInfo) -> None:
    """Delete the sandbox's Application with what it synced, if it has one (waits for it)."""
    app = str(info.extra.get("argocd_application") or "")
    if app:
        argocd_namespace, _, name = app.partition("/")
        argocd.delete_application(target, argocd_namespace, name, sandbox_id=info.id)

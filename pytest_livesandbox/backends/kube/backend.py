"""The ``kube`` backend: a namespace with PostgreSQL, the app's manifests and a live endpoint.

    pytest --sandbox=kube --sandbox-manifests=k8s/ --sandbox-image backend=myapp:dev

Bring-up, on any cluster the kubeconfig reaches (a production-looking context is refused):

1. namespace ``<prefix>-<id>`` with our labels and ``livesandbox/expires-at``; quota, limit range
   and network policies (:mod:`..kube.namespace`);
2. PostgreSQL (:mod:`..postgres.kube`) and the Secret ``livesandbox-db`` (key ``url``: the app's
   DSN) unless ``--sandbox-db-dsn`` names an external database; reachable from the tests through a
   port-forward on 127.0.0.1, with an app role that is not a superuser;
3. the app's manifests with image overrides, created while PostgreSQL initialises (their pods
   wait for the database in an init container; a ``--sandbox-migrate-cmd`` Job runs first:
   :mod:`..kube.bringup`); wait for the rollout (failing fast with pod states, events and log
   tails) and for the health path to answer through a port-forward (or the public
   ``--sandbox-url-template`` URL).

Teardown deletes the namespace (only if it carries our labels) and waits until it is gone;
``--sandbox-attach NAMESPACE`` reuses an existing sandbox and never deletes it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...chaos.clock import clock_problems
from ...chaos.driver import proxy_off_problems
from ...config import SandboxConfig
from ...errors import (
    AppCrashed,
    ConfigError,
    RolloutFailed,
    SandboxError,
    TeardownError,
)
from ...faultproxy import proxy_image
from ...info import SandboxInfo, default_owner
from ...lease import Lease
from ...locations import state_root
from ...protocol import ListScope, SandboxHealth, SandboxRecord
from ...readiness import HttpReady, wait_until_ready
from ...redaction import redact_error
from . import artifacts as kube_artifacts
from . import faultproxy as fp
from . import manifests as mf
from . import postgres as pg
from . import sandboxes
from .argocd import check_argocd
from .argocd_deploy import ANNOTATION, delete_synced_app, deployer_problems, sync_with_argocd
from .attach import attach_namespace
from .bringup import external_database, own_database
from .chaos import KubeChaos
from .checks import config_problems
from .client import KubeTarget, connect
from .clock import check_loaded, instrument
from .diagnose import api_error
from .health import kube_health, target_for
from .images import build_problems, start_build
from .names import (
    EXPIRES_AT,
    check_url_template,
    git_sha,
    namespace_name,
    render_url_template,
    sandbox_labels,
)
from .namespace import delete_namespace, guard_rails, namespace_body
from .portforward import PortForwarder
from .proxy_setup import NamespaceProxy, with_image_hint
from .public_url import await_public_url
from .reaper import ReaperInstaller
from .rollout import RolloutReady
from .route import check_route_target, parse_route
from .warm import WarmNamespaces

if TYPE_CHECKING:
    from ...chaos.markers import ChaosPlan
    from ...images.pipeline import BackgroundBuild

DEMO_MANIFESTS = Path(__file__).resolve().parents[3] / "examples" / "demo_app" / "k8s"


class KubeBackend(WarmNamespaces, ReaperInstaller):
    """Provision and tear down sandbox namespaces (see the module docstring)."""

    name: ClassVar[str] = "kube"
    demo_manifests: ClassVar[Path] = DEMO_MANIFESTS
    supported_faults: ClassVar[frozenset[str]] = KubeChaos.kinds
    deployers: ClassVar[tuple[str, ...]] = ("apply", "argocd")
    fault_hints: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self._targets: dict[str, KubeTarget] = {}
        self._forwarders: dict[str, list[PortForwarder]] = {}
        self._passwords: dict[str, list[str]] = {}
        self._builds: dict[str, BackgroundBuild | None] = {}
        self._artifacts = kube_artifacts.Collector(self._targets)

    # -- connection -------------------------------------------------------------------------------

    def connect(self, config: SandboxConfig) -> KubeTarget:
        """The cluster to use (the gke backend first fetches credentials)."""
        return connect(
            kubeconfig=config.kubeconfig,
            context=config.context,
            allow_context=config.allow_context,
        )

    # -- provision --------------------------------------------------------------------------------

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Bring the sandbox up; on any failure (or Ctrl-C) remove what was made, then re-raise."""
        info = SandboxInfo(
            id=sandbox_id,
            backend=self.name,
            run_id=run_id,
            owner=default_owner(),
            created_at=time.time(),
        )
        try:
            self._provision(config, info)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.teardown(info)
            known = [*info.secret_values(), *self._passwords.pop(info.id, [])]  # log tails
            if isinstance(exc, Exception) and not isinstance(exc, SandboxError):
                raise redact_error(api_error(exc, info), known) from None
            redact_error(exc, known)
            raise
        self._passwords.pop(info.id, None)
        return info

    def _provision(self, config: SandboxConfig, info: SandboxInfo) -> None:
        began = time.monotonic()
        deadline = began + config.startup_timeout
        if config.url_template:
            check_url_template(config.url_template)
        route = parse_route(config.route, config.url_template)
        namespace = namespace_name(config.namespace_prefix, info.id)
        objs: list[dict[str, Any]] = []
        pending = None
        argo = config.deployer == "argocd"  # the manifests come from Git, through Argo CD
        if not config.attach:
            # Everything that can be wrong with the input is checked before anything is created.
            built_components = [component for component, _, _ in config.build]
            if not argo:
                objs = self._app_objects(config, info, namespace, built_components)
            # --sandbox-build: inputs checked now; build and push need no cluster, so they run
            # while we connect and the namespace and PostgreSQL come up (failure: teardown).
            pending = self._builds.pop(info.run_id, None) or start_build(config)
        target = self.connect(config)
        self._targets[info.id] = target
        target.record(info, config.namespace_prefix)
        if config.attach:
            attach_namespace(config, info, target, deadline, self._forward)
            info.timings["app_ready_s"] = round(time.monotonic() - began, 4)
            return
        check_route_target(target, route)
        if argo:
            check_argocd(target, config.argocd_namespace)
        sha = git_sha(config.app_cwd)
        # Leased from the start, with room for the start-up: a run killed now still lapses.
        lease = Lease("held", info.run_id, time.time() + config.startup_timeout + config.lease)
        labels = sandbox_labels(info.id, info.run_id, info.owner, sha, backend=self.name)
        body = namespace_body(namespace, labels, config.ttl, lease)
        if argo:  # `livesandbox gc` finds (and deletes) the Application through it
            body["metadata"]["annotations"][ANNOTATION] = f"{config.argocd_namespace}/{namespace}"
        target.core.create_namespace(body)
        info.namespace = namespace
        info.extra["created_namespace"] = True
        self._artifacts.watch(info, target)  # logs of pods deleted during a test
        info.extra["expires_at"] = body["metadata"]["annotations"][EXPIRES_AT]
        if sha:
            info.extra["git_sha"] = sha
        mf.create_objects(target.api, namespace, guard_rails())
        info.timings["namespace_s"] = round(time.monotonic() - began, 4)

        clock_map = instrument(config, objs, info)  # libfaketime into the app pods (fake_clock)
        if clock_map is not None:  # before any app pod: its volume names the ConfigMap
            mf.create_objects(target.api, namespace, [clock_map])
        passwords = self._passwords[info.id] = []
        if config.db_dsn:
            proxy = external_database(config, info, target, objs, pending, (began, deadline))
        else:
            proxy = own_database(
                config, info, target, objs, pending, self._forward, passwords, (began, deadline)
            )
        if argo:  # Argo CD syncs the manifests; the live Services/workloads stand in for objs
            built = list((info.extra.get("digests") or {}).items())  # --sandbox-build's refs
            objs = sync_with_argocd(target, config, info, labels, built, proxy, began, deadline)
        self._await_app(config, info, target, namespace, objs, deadline, proxy)
        check_loaded(config, info, target)  # the app pods really read the clock's control file
        info.timings["app_ready_s"] = round(time.monotonic() - began, 4)

    def _app_objects(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        namespace: str,
        built: list[str],
    ) -> list[dict[str, Any]]:
        source = config.manifests or DEMO_MANIFESTS
        objs = mf.load_manifests(source)
        url = (
            render_url_template(
                config.url_template, sandbox_id=info.id, namespace=namespace, run_id=info.run_id
            )
            if config.url_template
            else ""
        )
        values = {
            "LIVESANDBOX_ID": info.id,
            "LIVESANDBOX_NAMESPACE": namespace,
            "LIVESANDBOX_RUN_ID": info.run_id,
            "LIVESANDBOX_URL": url,
            "LIVESANDBOX_HOST": url.split("://", 1)[-1].split("/", 1)[0] if url else "",
        }
        objs = [mf.substitute(obj, values) for obj in objs]
        mf.check_namespaced(objs, namespace)
        app_overrides = [(c, i) for c, i in config.image if c not in (pg.COMPONENT, fp.COMPONENT)]
        used = mf.override_images(objs, app_overrides)
        unknown = [c for c, _ in app_overrides if c not in used]
        unknown_built = [c for c in built if c not in mf.known_components(objs)]
        if unknown or unknown_built:
            flag = "--sandbox-image" if unknown else "--sandbox-build"
            raise ConfigError(
                f"{flag} {', '.join(unknown or unknown_built)}=...: no workload in {source} has "
                "that app.kubernetes.io/component label or name; known: "
                f"{', '.join([*mf.known_components(objs), pg.COMPONENT])}"
            )
        info.extra["manifests"] = str(source)
        return objs

    def _await_app(
        self,
        config: SandboxConfig,
        info: SandboxInfo,
        target: KubeTarget,
        namespace: str,
        objs: list[dict[str, Any]],
        deadline: float,
        proxy: NamespaceProxy | None = None,
    ) -> None:
        endpoint = mf.endpoint_target(objs)
        loads = mf.workloads(objs)
        probe: HttpReady | None = None
        probed = None
        if proxy is not None:
            # The control API listens on the pod's loopback: reached through the API server only.
            control = self._forward(target, info, namespace, fp.SELECTOR, fp.CONTROL_PORT, "proxy")
            info.extra["fault_proxy"] = {"control_port": control.port, "routes": proxy.routes}
        app_selector = None
        if endpoint is not None:
            selector, port, probed = endpoint
            app_selector = selector
            if proxy is not None and "app" in proxy.routes:
                selector, port = fp.SELECTOR, fp.ROUTE_PORTS["app"]  # the client goes through it
            forwarder = self._forward(target, info, namespace, selector, port, "app")
            info.endpoint = forwarder.url
            info.extra["endpoint_selector"] = selector
            probe = HttpReady(forwarder.url + config.health_path)
        if loads or probe is not None:
            try:
                wait_until_ready(
                    RolloutReady(
                        target,
                        namespace,
                        loads,
                        what=f"the app in namespace {namespace}",
                        probe=probe.check if probe else None,
                        probe_hint=probe.hint if probe else None,
                        probed=probed,
                        probe_selector=app_selector,
                        secrets=info.secret_values(),
                        health_path=config.health_path,
                    ),
                    timeout=max(deadline - time.monotonic(), 0.1),
                    interval=0.1,
                    max_interval=0.25,
                )
            except (RolloutFailed, AppCrashed) as exc:  # the clock sidecar: the proxy's image
                raise with_image_hint(exc, proxy_image(config.image)) from None
        if config.url_template:
            await_public_url(config, info, target, namespace, deadline, objs, proxy)

    def _forward(
        self,
        target: KubeTarget,
        info: SandboxInfo,
        namespace: str,
        selector: str,
        port: int | str,
        name: str,
    ) -> PortForwarder:
        forwarder = PortForwarder(target.api.configuration, namespace, selector, port, name=name)
        self._forwarders.setdefault(info.id, []).append(forwarder.start())
        info.extra.setdefault("forwards", {})[name] = forwarder.port
        return forwarder

    # -- artifacts, teardown ----------------------------------------------------------------------

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """The namespace's container logs, events and pod changes in ``[since, until]``."""
        return self._artifacts.collect(info, since, until, dest)

    def teardown(self, info: SandboxInfo) -> None:
        """Stop the port-forwards; delete the namespace we made (never an attached one)."""
        for forwarder in self._forwarders.pop(info.id, []):
            forwarder.close()
        self._artifacts.stop(info)
        target = self._targets.pop(info.id, None)
        with contextlib.suppress(OSError):
            (state_root() / f"{info.id}.template.lock").unlink(missing_ok=True)
        try:
            if info.extra.get("attached") or not info.extra.get("created_namespace"):
                return
            assert info.namespace is not None
            if target is None:
                kubeconfig = info.extra.get("kubeconfig")
                target = connect(
                    kubeconfig=Path(kubeconfig) if kubeconfig else None,
                    context=info.extra.get("context"),
                    allow_context=None,
                    check_production=False,
                )
            delete_synced_app(target, info)  # argocd: the Application first (and what it synced)
            delete_namespace(target.core, info.namespace, sandbox_id=info.id)
        except (SandboxError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise TeardownError(
                f"could not delete namespace {info.namespace} ({type(exc).__name__}: "
                f"{str(exc)[:300]}); it expires at {info.extra.get('expires_at')}: remove it with "
                f"`livesandbox down {info.namespace}` or `livesandbox gc` once the cluster answers"
            ) from None
        finally:
            if target is not None:
                target.close()

    # ----------------------------------------------------------------- protocol: config, chaos, CLI

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """PostgreSQL's pod ready; the app's container restarts (one list call, health.py)."""
        return kube_health(target_for(info), info)

    def check_config(self, config: SandboxConfig) -> list[str]:
        """Settings checked before connecting (build registry, prefix, manifests, kubeconfig)."""
        return [
            *build_problems(config, self.name),
            *config_problems(config),
            *deployer_problems(config),
        ]

    def chaos(self, info: SandboxInfo, owner: str) -> KubeChaos:
        """The kube chaos driver (Eviction API, patched resources, role limits, kill_db)."""
        return KubeChaos(info, owner=owner)

    def fault_problems(self, plan: ChaosPlan, config: SandboxConfig) -> list[str]:
        """Proxy faults need the fault proxy; a clock fault ``livesandbox_fake_clock``."""
        return [
            *proxy_off_problems(plan, config.fault_proxy),
            *clock_problems(plan, config, has_app=True),
        ]

    def list_sandboxes(self, scope: ListScope) -> list[SandboxRecord]:
        """Namespaces labelled as ours (and as this backend's) in the scope's cluster."""
        return sandboxes.list_records(self.name, scope)

    def reap(self, record: SandboxRecord) -> None:
        """Delete the listed namespace (refused unless our labels say it is ours)."""
        sandboxes.reap_record(record)

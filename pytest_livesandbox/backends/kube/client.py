"""Connect to a cluster from a kubeconfig: pick the context, refuse production, check it answers.

    target = connect(kubeconfig=None, context=None, allow_context=None)  # $KUBECONFIG, current ctx
    CoreV1Api(target.api).list_namespace(label_selector=OWNED_SELECTOR)

Every failure is a :class:`~pytest_livesandbox.errors.ClusterUnreachable` (or
:class:`~pytest_livesandbox.errors.UnsafeTarget`) whose message names the fix.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import ApiException
from kubernetes.config.config_exception import ConfigException

from ...errors import ClusterUnreachable
from ...info import SandboxInfo
from .coreapi import CoreApi
from .names import check_context_allowed

PROBE_TIMEOUT = 5.0
GKE_PLUGIN_HINT = "gcloud components install gke-gcloud-auth-plugin"


# The generated client's models make every field Optional; we read them as Any.
_config: Any = k8s_config


@dataclass
class KubeTarget:
    """An API client bound to one context, plus where it points (for messages and reports)."""

    api: Any
    context: str
    server: str
    kubeconfig: str | None

    @property
    def core(self) -> Any:
        """The core/v1 API (pods, services, namespaces, ...): :class:`~.coreapi.CoreApi`."""
        return CoreApi(self.api)

    @property
    def apps(self) -> Any:
        """The apps/v1 API (deployments, statefulsets, ...)."""
        return k8s.AppsV1Api(self.api)

    def record(self, info: SandboxInfo, namespace_prefix: str) -> None:
        """Where the namespace lives, in ``info.extra`` (teardown, gc and reports read it)."""
        info.extra.update(
            context=self.context,
            server=self.server,
            kubeconfig=self.kubeconfig,
            namespace_prefix=namespace_prefix,
        )

    def close(self) -> None:
        """Release the connection pool."""
        self.api.close()


def kubeconfig_files(explicit: Path | None) -> list[Path]:
    """The kubeconfig files that would be read: ``explicit``, else ``$KUBECONFIG``, else default."""
    if explicit is not None:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def kubeconfig_problems(explicit: Path | None) -> list[str]:
    """Kubeconfig files that are missing (when named explicitly) or not valid YAML.

    Read before connecting, so a broken file says so instead of "lost the connection".
    """
    problems = []
    for path in kubeconfig_files(explicit):
        if not path.exists():
            if explicit is not None:
                problems.append(f"--sandbox-kubeconfig: {path} does not exist")
            continue
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            problems.append(f"kubeconfig {path} cannot be read: {exc.strerror}")
            continue
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            problems.append(
                f"kubeconfig {path} is not valid YAML{at}; fix the file or point "
                "--sandbox-kubeconfig / $KUBECONFIG at a good one"
            )
            continue
        if doc is not None and not isinstance(doc, dict):
            problems.append(f"kubeconfig {path} is not a kubeconfig (no mapping at the top)")
    return problems


def connect(
    *,
    kubeconfig: Path | None,
    context: str | None,
    allow_context: str | None,
    check_production: bool = True,
) -> KubeTarget:
    """An API client for ``context`` (default: the current one) that has answered a request.

    ``check_production=False`` skips the production guard: only for removing what we made
    (which is checked by its labels instead).
    """
    files = kubeconfig_files(kubeconfig)
    existing = [f for f in files if f.is_file()]
    if not existing:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster(allow_context if check_production else ".*")
        raise ClusterUnreachable(
            f"no kubeconfig found (looked at {', '.join(str(f) for f in files)}). Point "
            "--sandbox-kubeconfig (or KUBECONFIG) at one, e.g. the path `bash cluster/up` prints, "
            "or create it with `gcloud container clusters get-credentials` / your cluster's tool."
        )
    config_file = str(kubeconfig) if kubeconfig is not None else None
    try:
        contexts, active = _config.list_kube_config_contexts(config_file)
    except (ConfigException, OSError, ValueError) as exc:
        raise ClusterUnreachable(f"cannot read kubeconfig {_show(files)}: {exc}") from None
    names = [c["name"] for c in contexts or []]
    chosen = context or (active or {}).get("name")
    if not chosen or chosen not in names:
        raise ClusterUnreachable(
            f"kube context {chosen!r} is not in {_show(files)}; available: "
            f"{', '.join(names) or 'none'}. Choose one with --sandbox-context."
        )
    plugin = missing_exec_plugin(existing, chosen)
    if plugin:
        raise ClusterUnreachable(
            f"kube context {chosen!r} logs in through the exec plugin {plugin!r}, which is not on "
            f"PATH: install it (GKE: {GKE_PLUGIN_HINT}; EKS: the aws CLI)."
        )
    try:
        api = _config.new_client_from_config(
            config_file=config_file, context=chosen, persist_config=False
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise ClusterUnreachable(
            f"cannot load credentials of kube context {chosen!r} from {_show(files)}: {exc}"
        ) from None
    target = KubeTarget(api, chosen, str(api.configuration.host), config_file)
    try:
        if check_production:
            check_context_allowed(target.context, target.server, allow_context)
        probe(target)
    except BaseException:
        target.close()
        raise
    return target


def missing_exec_plugin(files: list[Path], context: str) -> str | None:
    """The exec credential plugin ``context``'s user needs, if it is not on PATH."""
    docs = []
    for f in files:
        try:
            docs.append(yaml.safe_load(f.read_text()) or {})
        except (OSError, yaml.YAMLError):
            continue
    user = next(
        (
            (c.get("context") or {}).get("user")
            for d in docs
            for c in d.get("contexts") or []
            if c.get("name") == context
        ),
        None,
    )
    for d in docs:
        for entry in d.get("users") or []:
            if entry.get("name") != user:
                continue
            command = ((entry.get("user") or {}).get("exec") or {}).get("command")
            if command and shutil.which(str(command)) is None:
                return str(command)
            return None
    return None


def _in_cluster(allow_context: str | None) -> KubeTarget:
    configuration: Any = k8s.Configuration()
    _config.load_incluster_config(client_configuration=configuration)
    target = KubeTarget(k8s.ApiClient(configuration), "in-cluster", configuration.host, None)
    check_context_allowed(target.context, target.server, allow_context)
    probe(target)
    return target


def probe(target: KubeTarget) -> None:
    """One cheap request (``GET /version``); raise :class:`ClusterUnreachable` with the fix."""
    where = f"the Kubernetes API server {target.server} (context {target.context!r})"
    try:
        k8s.VersionApi(target.api).get_code(_request_timeout=PROBE_TIMEOUT)
        # /version is open to anyone; listing namespaces proves the credentials work.
        target.core.list_namespace(limit=1, _request_timeout=PROBE_TIMEOUT)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise ClusterUnreachable(
                f"{where} refused our credentials (HTTP {exc.status}: {exc.reason}). Refresh them "
                "(e.g. `gcloud container clusters get-credentials`, or check the user in the "
                "kubeconfig); sandboxes need rights to create namespaces."
            ) from None
        raise ClusterUnreachable(f"{where} answered HTTP {exc.status}: {exc.reason}") from None
    except Exception as exc:
        raise ClusterUnreachable(
            f"{where} did not answer ({_reason(exc)}). Is the cluster running? Check with "
            f"`kubectl --context {target.context} get nodes`; for this repository's own cluster "
            "run `bash cluster/up`."
        ) from None


def _reason(exc: BaseException) -> str:
    reason: Any = getattr(exc, "reason", None)
    text = str(reason or exc)
    return text if len(text) < 300 else text[:300] + "..."


def _show(files: list[Path]) -> str:
    return ", ".join(str(f) for f in files)

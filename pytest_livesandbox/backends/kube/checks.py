"""Kube settings checked at configure, before any connection (the backend's ``check_config``).

    config_problems(cfg)   # ["--sandbox-namespace-prefix 'Bad_Prefix' does not make ...", ...]

A bad namespace prefix, missing or broken manifests and a kubeconfig that is not valid YAML are
each named here, instead of surfacing later as "lost the connection to the API server".
"""

from __future__ import annotations

from ...config import SandboxConfig
from ...errors import ConfigError
from . import manifests as mf
from .client import kubeconfig_problems
from .names import namespace_name


def config_problems(config: SandboxConfig) -> list[str]:
    """Everything wrong with the kube settings of ``config`` that needs no cluster to see."""
    problems = []
    try:
        namespace_name(config.namespace_prefix, "0" * 8)
    except ConfigError as exc:
        problems.append(str(exc))
    if config.manifests is not None and not config.attach:
        try:
            mf.load_manifests(config.manifests)
        except ConfigError as exc:
            problems.append(str(exc))
    problems.extend(kubeconfig_problems(config.kubeconfig))
    return problems

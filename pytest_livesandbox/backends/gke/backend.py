"""The ``gke`` backend: the ``kube`` backend on a Google Kubernetes Engine cluster.

    pytest --sandbox=gke --sandbox-gke-cluster=my-proj/europe-west1/dev
           --sandbox-url-template='https://sandbox-{id}.dev.example.com'

Credentials come from ``gcloud container clusters get-credentials`` (written to a private
kubeconfig, never your ``~/.kube/config``) when ``--sandbox-gke-cluster`` is given, else from the
current kube context (or ``--sandbox-context``). Both need ``gke-gcloud-auth-plugin`` on PATH.
The endpoint is the public URL from ``--sandbox-url-template`` once it answers, else the
port-forward (see :class:`~pytest_livesandbox.backends.kube.backend.KubeBackend`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...config import SandboxConfig
from ...errors import ClusterUnreachable, ConfigError
from ...info import SandboxInfo
from ...locations import state_root
from ..kube.backend import KubeBackend
from ..kube.client import KubeTarget, connect
from .chaos import GkeChaos

AUTH_PLUGIN = "gke-gcloud-auth-plugin"
INSTALL_PLUGIN = (
    "gcloud components install gke-gcloud-auth-plugin (or apt-get install "
    "google-cloud-cli-gke-gcloud-auth-plugin)"
)
_PART = re.compile(r"^[a-z0-9]([-a-z0-9_.:]*[a-z0-9])?$")


@dataclass(frozen=True)
class GkeCluster:
    """A GKE cluster as ``PROJECT/LOCATION/NAME`` (location: a region or a zone)."""

    project: str
    location: str
    name: str

    @classmethod
    def parse(cls, text: str) -> GkeCluster:
        """Parse ``--sandbox-gke-cluster``.

        >>> GkeCluster.parse("acme-dev/europe-west1/sandbox").context
        'gke_acme-dev_europe-west1_sandbox'
        """
        parts = text.strip().split("/")
        if len(parts) != 3 or not all(_PART.match(p) for p in parts):
            raise ConfigError(
                f"--sandbox-gke-cluster {text!r} is not PROJECT/LOCATION/NAME, e.g. "
                "acme-dev/europe-west1/sandbox (location: a region or a zone)"
            )
        return cls(*parts)

    @property
    def context(self) -> str:
        """The kube context name ``get-credentials`` writes."""
        return f"gke_{self.project}_{self.location}_{self.name}"


def credentials_command(cluster: GkeCluster, gcloud: str = "gcloud") -> list[str]:
    """The ``gcloud`` command that writes this cluster's credentials into ``$KUBECONFIG``.

    >>> " ".join(credentials_command(GkeCluster("p", "europe-west1-b", "c")))
    'gcloud container clusters get-credentials c --project p --location europe-west1-b'
    """
    return [
        gcloud,
        "container",
        "clusters",
        "get-credentials",
        cluster.name,
        "--project",
        cluster.project,
        "--location",
        cluster.location,
    ]


def credentials_env(kubeconfig: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the credentials command: a private kubeconfig, no prompts."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "USE_GKE_GCLOUD_AUTH_PLUGIN": "True",
        }
    )
    return env


def fetch_credentials(cluster: GkeCluster, kubeconfig: Path, timeout: float = 120.0) -> Path:
    """Run ``gcloud container clusters get-credentials`` into ``kubeconfig``; clear errors."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise ClusterUnreachable(
            "--sandbox-gke-cluster needs the gcloud CLI, which is not on PATH: install the Google "
            "Cloud SDK (https://cloud.google.com/sdk/docs/install), or leave "
            "--sandbox-gke-cluster out to use the current kube context."
        )
    if shutil.which(AUTH_PLUGIN) is None:
        raise ClusterUnreachable(f"GKE credentials need {AUTH_PLUGIN} on PATH: {INSTALL_PLUGIN}.")
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            credentials_command(cluster, gcloud),
            env=credentials_env(kubeconfig),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClusterUnreachable(
            f"`gcloud container clusters get-credentials {cluster.name}` did not finish in "
            f"{timeout:g}s; check the network path to Google Cloud"
        ) from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split())[-600:] or f"exit code {done.returncode}"
        raise ClusterUnreachable(
            f"gcloud could not fetch credentials for GKE cluster {cluster.name!r} (project "
            f"{cluster.project}, location {cluster.location}): {message}\nFix: log in with "
            "`gcloud auth login` (CI: `gcloud auth activate-service-account --key-file=KEY.json` "
            "or workload identity), and check PROJECT/LOCATION/NAME with "
            "`gcloud container clusters list`."
        )
    return kubeconfig


class GkeBackend(KubeBackend):
    """:class:`KubeBackend` with GKE credentials; everything else is shared."""

    name: ClassVar[str] = "gke"
    supported_faults: ClassVar[frozenset[str]] = GkeChaos.kinds

    def chaos(self, info: SandboxInfo, owner: str) -> GkeChaos:
        """Every kube fault works on gke: the same driver, reconnecting from the sandbox info."""
        return GkeChaos(info, owner=owner)

    def connect(self, config: SandboxConfig) -> KubeTarget:
        """Fetch credentials for ``--sandbox-gke-cluster``, or use the configured context."""
        if not config.gke_cluster:
            return super().connect(config)
        cluster = GkeCluster.parse(config.gke_cluster)
        kubeconfig = fetch_credentials(cluster, state_root() / f"{cluster.context}.kubeconfig")
        return connect(
            kubeconfig=kubeconfig,
            context=config.context or cluster.context,
            allow_context=config.allow_context,
        )

"""The gke backend's chaos driver: every kube fault, unchanged.

A GKE sandbox is a kube sandbox whose credentials came from ``gcloud``; the driver reconnects
from the kubeconfig and context recorded in the sandbox info, so nothing differs::

    driver = GkeChaos(info, owner="gw0::test_x")     # info.backend == "gke"
"""

from __future__ import annotations

from ..kube.chaos import KubeChaos


class GkeChaos(KubeChaos):
    """:class:`~..kube.chaos.KubeChaos` for GKE sandboxes."""

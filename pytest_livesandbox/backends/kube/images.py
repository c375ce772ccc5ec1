"""``--sandbox-build`` on Kubernetes: build and push in the background, deploy the digest.

    pending = start_build(config)         # inputs checked now (BuildFailed, RegistryError)
    ...                                   # namespace, PostgreSQL come up meanwhile
    use_build(pending, info, objs, began) # wait; workloads get REPO@sha256:..., IfNotPresent

The image is built by the Docker engine and pushed to ``--sandbox-registry`` (see
:mod:`...images.engine` for why the engine); the cluster pulls the digest, so a stale tag can
never answer.
"""

from __future__ import annotations

import time
from typing import Any

from ...config import SandboxConfig
from ...images.context import specs_from
from ...images.early import take_early
from ...images.pipeline import BackgroundBuild
from ...images.registry import Registry
from ...info import SandboxInfo
from . import manifests as mf


def build_problems(config: SandboxConfig, backend: str) -> list[str]:
    """What ``--sandbox-build`` needs from the other settings (no I/O)."""
    problems = []
    if config.build and not config.registry:
        problems.append(
            f"--sandbox-build needs --sandbox-registry with --sandbox={backend}: the cluster "
            "pulls the built image from a registry (e.g. --sandbox-registry="
            "europe-docker.pkg.dev/PROJECT/REPO; on our CI cluster `cluster/up` prints "
            "`registry: HOST:PORT`)"
        )
    if config.build and config.attach:
        problems.append(
            "--sandbox-build with --sandbox-attach: an attached sandbox keeps the images it "
            "runs; drop one of them"
        )
    return problems


def start_build(config: SandboxConfig) -> BackgroundBuild | None:
    """Check the inputs and start building and pushing (``None`` without ``--sandbox-build``)."""
    if not config.build:
        return None
    assert config.registry is not None  # build_problems asks for it at configure
    early = take_early(config)  # started by pytest_configure, while pytest collected
    if early is not None:
        return early
    return BackgroundBuild(specs_from(config.build, config.build_arg), Registry(config.registry))


def use_build(
    pending: BackgroundBuild | None, info: SandboxInfo, objs: list[dict[str, Any]], began: float
) -> list[tuple[str, str]]:
    """Wait for the build; record timings and digests; point the workloads at the digests.

    Returns ``(component, REPO@sha256:...)`` of every built image (``[]`` without a build).
    """
    if pending is None:
        return []
    result = pending.result()
    result.record(info)
    info.timings["images_ready_s"] = round(time.monotonic() - began, 4)
    refs = list(result.refs())
    mf.override_images(objs, refs, pull_policy="IfNotPresent")
    return refs

"""``--sandbox-build`` for a backend that pushes (kube, gke), started when pytest configures.

The engine then builds while pytest imports the backend, collects, and claims or provisions
the sandbox, instead of after all that::

    start_early(cfg)             # plugin.py's pytest_configure: the controller, not --collect-only
    pending = take_early(cfg)    # the kube backend's start_build: that build, or None

Bad input is not reported here: the build is then simply not started early, and the backend's
own :func:`~.pipeline.BackgroundBuild` raises the same error at provisioning, as without this.
A run that stops before provisioning (a collection error) leaves at most a pushed image of its
source, which the next run of the same source reuses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import SandboxError
from .context import specs_from
from .pipeline import BackgroundBuild
from .registry import Registry

if TYPE_CHECKING:
    from ..config import SandboxConfig

PUSHING_BACKENDS = ("kube", "gke")  # they build with build_and_push (see backends/kube/images)
_Key = tuple[object, ...]
_started: dict[_Key, BackgroundBuild] = {}
_lock = threading.Lock()


def _key(config: SandboxConfig) -> _Key:
    return (config.build, config.build_arg, config.registry)


def start_early(config: SandboxConfig) -> None:
    """Start building and pushing ``config``'s images now, if its backend pushes them."""
    if not config.build or not config.registry or config.attach:
        return
    if config.backend not in PUSHING_BACKENDS:
        return
    with _lock:
        if _key(config) in _started:
            return
        try:
            pending = BackgroundBuild(
                specs_from(config.build, config.build_arg), Registry(config.registry)
            )
        except SandboxError:  # raised again, in words, when the backend starts the build
            return
        _started[_key(config)] = pending


def take_early(config: SandboxConfig) -> BackgroundBuild | None:
    """The build :func:`start_early` started for ``config`` (once), else ``None``."""
    with _lock:
        return _started.pop(_key(config), None)

"""The reuse key: a hash of everything that shapes a sandbox (``--sandbox-reuse``).

Two runs whose keys match may share a warm sandbox; any change to the app command, images,
manifests, migration command, PostgreSQL version or plugin version gives a new key, and so does
a changed ``--sandbox-build`` content unless the backend rolls builds into a warm sandbox
(``Backend.rolls_builds(config)``: kube, where only the rebuilt workloads change)::

    key = reuse_key(config, backend)     # "3f9c2a1b0d4e5f60"

It sits below the backends so that one whose resources cannot be relabelled later (docker
containers) can stamp the key on them when it creates them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from .images.context import content_tag, specs_from

if TYPE_CHECKING:
    from .config import SandboxConfig
    from .protocol import Backend

KEY_LENGTH = 16
# Options that never change what the sandbox is (reporting, timing, the reuse options).
_NOT_IN_KEY = frozenset(
    {
        "report",
        "report_url",
        "html",
        "ci_annotations",
        "startup_timeout",
        "chaos_verify_timeout",
        "keep",
        "lease",
        "reuse",
        "reuse_idle",
        "reuse_pool",
        "ttl",
        "sources",
    }
)


def plugin_version() -> str:
    """The installed pytest-livesandbox version (part of every reuse key)."""
    try:
        return importlib.metadata.version("pytest-livesandbox")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def reuse_key(config: SandboxConfig, backend: Backend) -> str:
    """A hash of everything that shapes the sandbox (every option that is not about reporting).

    New options (``migrate_cmd``) enter the key by themselves; the backend adds what the options
    do not say (PostgreSQL version, a digest of the manifests' contents).
    """
    shape = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_KEY}
    shape["plugin"] = plugin_version()
    if not backend.rolls_builds(config):  # built images by content (the build's own tag)
        shape["builds"] = [content_tag(spec) for spec in specs_from(config.build, config.build_arg)]
    shape["backend_parts"] = backend.reuse_parts(config)
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]

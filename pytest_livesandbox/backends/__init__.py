"""The backends, found through the ``pytest_livesandbox.backends`` entry-point group.

Ours are declared in ``pyproject.toml`` like a third party's would be, so adding one (EKS, AKS)
touches only its own package and one entry-point line::

    backend = load_backend("kube")          # an instance; SandboxError names the pip extra if
                                            # the backend's dependencies are missing
    [b.name for b in available_backends()]  # every backend that imports here (for the CLI)
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import TYPE_CHECKING

from ..config import BACKEND_GROUP, backend_names
from ..errors import SandboxError

if TYPE_CHECKING:
    from ..protocol import Backend


@functools.cache
def _entry_point(name: str) -> importlib.metadata.EntryPoint:
    for entry in importlib.metadata.entry_points(group=BACKEND_GROUP):
        if entry.name == name:
            return entry
    raise SandboxError(
        f"--sandbox={name} has no backend; installed: {', '.join(backend_names())} "
        f"(a backend registers itself in the {BACKEND_GROUP!r} entry-point group)"
    )


def load_backend(name: str) -> Backend:
    """A fresh instance of the backend registered as ``name`` (imported on first use)."""
    entry = _entry_point(name)
    try:
        cls = entry.load()
    except ModuleNotFoundError as exc:
        extra = f"[{','.join(entry.extras)}]" if entry.extras else ""
        raise SandboxError(
            f"--sandbox={name} needs the package {exc.name!r}: "
            f"pip install 'pytest-livesandbox{extra}'"
        ) from None
    backend: Backend = cls()
    return backend


def available_backends() -> list[Backend]:
    """Every registered backend whose dependencies are installed (the CLI lists their sandboxes)."""
    found = []
    for name in backend_names():
        try:
            found.append(load_backend(name))
        except SandboxError:
            continue
    return found


if TYPE_CHECKING:
    # mypy checks that each of our backends satisfies the protocol (no import at run time).
    from .docker.backend import DockerBackend
    from .gke.backend import GkeBackend
    from .kube.backend import KubeBackend
    from .local.backend import LocalBackend

    _local: type[Backend] = LocalBackend
    _docker: type[Backend] = DockerBackend
    _kube: type[Backend] = KubeBackend
    _gke: type[Backend] = GkeBackend

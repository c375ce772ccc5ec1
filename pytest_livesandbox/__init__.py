"""pytest-livesandbox: run your tests against a live app, a real PostgreSQL and real faults.

    pytest --sandbox=local          # embedded PostgreSQL + your app as a subprocess

Public API (a test pins ``__all__``)::

    from pytest_livesandbox import Sandbox, SandboxConfig, SandboxError
"""

from .config import Backend, SandboxConfig
from .errors import (
    AppCrashed,
    ChaosError,
    ChaosNotObserved,
    ClusterUnreachable,
    ConfigError,
    DatabaseStartError,
    MarkerError,
    ProvisionError,
    RolloutFailed,
    SandboxError,
    StartupTimeout,
    TeardownError,
    UnsafeTarget,
)
from .postgres.isolation import IsolatedDatabase
from .sandbox import DatabaseInfo, Sandbox, SandboxInfo

__version__ = "0.1.0"

__all__ = [
    "AppCrashed",
    "Backend",
    "ChaosError",
    "ChaosNotObserved",
    "ClusterUnreachable",
    "ConfigError",
    "DatabaseInfo",
    "DatabaseStartError",
    "IsolatedDatabase",
    "MarkerError",
    "ProvisionError",
    "RolloutFailed",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxInfo",
    "StartupTimeout",
    "TeardownError",
    "UnsafeTarget",
    "__version__",
]

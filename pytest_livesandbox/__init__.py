"""pytest-livesandbox: run your tests against a live app, a real PostgreSQL and real faults.

    pytest --sandbox=local          # embedded PostgreSQL + your app as a subprocess

Public API (a test pins ``__all__``)::

    from pytest_livesandbox import Sandbox, SandboxConfig, SandboxError
"""

from .config import Backend, SandboxConfig
from .errors import (
    AppCrashed,
    ChaosError,
    ClusterUnreachable,
    ConfigError,
    DatabaseStartError,
    MarkerError,
    MigrationFailed,
    ProvisionError,
    RolloutFailed,
    SandboxDied,
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
    "ClusterUnreachable",
    "ConfigError",
    "DatabaseInfo",
    "DatabaseStartError",
    "IsolatedDatabase",
    "MarkerError",
    "MigrationFailed",
    "ProvisionError",
    "RolloutFailed",
    "Sandbox",
    "SandboxConfig",
    "SandboxDied",
    "SandboxError",
    "SandboxInfo",
    "StartupTimeout",
    "TeardownError",
    "UnsafeTarget",
    "__version__",
]

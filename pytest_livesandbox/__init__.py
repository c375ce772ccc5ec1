"""pytest-livesandbox: run your tests against a live app, a real PostgreSQL and real faults.

    pytest --sandbox=local          # embedded PostgreSQL + your app as a subprocess

Public API (a test pins ``__all__``)::

    from pytest_livesandbox import Sandbox, SandboxConfig, SandboxError
"""

from .config import SandboxConfig
from .errors import (
    AppCrashed,
    ChaosError,
    ChaosNotObserved,
    ClusterUnreachable,
    ConfigError,
    DatabaseStartError,
    MarkerError,
    ProvisionError,
    RoleError,
    RolloutFailed,
    SandboxError,
    StartupTimeout,
    TeardownError,
    UnsafeTarget,
)
from .info import DatabaseInfo, SandboxInfo
from .postgres.audit import RoleAudit
from .postgres.grants import DbRole
from .postgres.isolation import IsolatedDatabase
from .protocol import Backend, ListScope, SandboxRecord
from .sandbox import Sandbox

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
    "DbRole",
    "IsolatedDatabase",
    "ListScope",
    "MarkerError",
    "ProvisionError",
    "RoleAudit",
    "RoleError",
    "RolloutFailed",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxInfo",
    "SandboxRecord",
    "StartupTimeout",
    "TeardownError",
    "UnsafeTarget",
    "__version__",
]

"""The exception tree of pytest-livesandbox.

Every error the plugin raises on purpose derives from :class:`SandboxError`; subclasses also inherit
the fitting builtin, so ``except TimeoutError`` works as well as ``except StartupTimeout``::

    SandboxError
    ├── ConfigError (ValueError)            a bad option, ini key or environment value
    ├── ProvisionError                      the sandbox could not be brought up
    │   ├── StartupTimeout (TimeoutError)   a component did not become ready in time
    │   ├── AppCrashed                      the app process/container exited during start-up
    │   ├── DatabaseStartError              PostgreSQL could not be started or reached
    │   ├── RolloutFailed                   pods cannot start (bad image, bad spec, quota)
    │   ├── BuildFailed                     --sandbox-build: no context/Dockerfile, a failing build
    │   ├── RegistryError                   unreachable or refusing registry, no credentials
    │   └── ClusterUnreachable (ConnectionError)
    ├── UnsafeTarget                        a production-looking context or foreign resource
    ├── MarkerError (ValueError)            a chaos or isolation marker with bad arguments
    ├── RoleError (ValueError)              a live_db_role request PostgreSQL cannot honour
    ├── ChaosError                          a fault could not be applied or removed
    │   └── ChaosNotObserved (AssertionError) a fault affected nothing: the test tested nothing
    └── TeardownError                       the sandbox could not be removed cleanly

Messages say what was tried and how to fix it; they never contain passwords.

Example::

    try:
        sandbox.start()
    except StartupTimeout as exc:
        print(exc)  # names the component, the deadline, the last log lines and a hint
"""

from __future__ import annotations


class SandboxError(Exception):
    """Root of all pytest-livesandbox errors."""


class ConfigError(SandboxError, ValueError):
    """A configuration value is invalid; the message names the option and the fix."""


class ProvisionError(SandboxError):
    """The sandbox could not be brought up; nothing half-made is left behind."""


class StartupTimeout(ProvisionError, TimeoutError):
    """A component did not become ready before its deadline."""


class AppCrashed(ProvisionError):
    """The app under test exited while the sandbox was starting."""


class DatabaseStartError(ProvisionError):
    """PostgreSQL could not be started or reached."""


class RolloutFailed(ProvisionError):
    """Kubernetes cannot start the sandbox's pods (image, spec or quota); the message says why."""


class BuildFailed(ProvisionError):
    """An image of ``--sandbox-build`` could not be built; the message ends with the build log."""


class RegistryError(ProvisionError):
    """The registry of ``--sandbox-registry`` cannot be reached, refuses, or wants credentials."""


class ClusterUnreachable(ProvisionError, ConnectionError):
    """The Kubernetes API server or Docker daemon did not answer."""


class UnsafeTarget(SandboxError):
    """Refused to act on something that looks like production or is not ours."""


class MarkerError(SandboxError, ValueError):
    """A marker has unknown or invalid arguments."""


class RoleError(SandboxError, ValueError):
    """A ``live_db_role`` request names an unknown privilege, a missing table or a bad setting."""


class ChaosError(SandboxError):
    """A fault could not be applied, or the sandbox did not return to baseline."""


class ChaosNotObserved(ChaosError, AssertionError):
    """A chaos test's fault affected nothing (``hits`` 0); ``require_hit=False`` allows it."""


class TeardownError(SandboxError):
    """The sandbox could not be removed cleanly."""


__all__ = [
    "AppCrashed",
    "BuildFailed",
    "ChaosError",
    "ChaosNotObserved",
    "ClusterUnreachable",
    "ConfigError",
    "DatabaseStartError",
    "MarkerError",
    "ProvisionError",
    "RegistryError",
    "RoleError",
    "RolloutFailed",
    "SandboxError",
    "StartupTimeout",
    "TeardownError",
    "UnsafeTarget",
]

from __future__ import annotations

import json

import pytest

import pytest_livesandbox
from pytest_livesandbox.errors import MarkerError, SandboxError, StartupTimeout
from pytest_livesandbox.info import DatabaseInfo, SandboxInfo
from pytest_livesandbox.postgres.isolation import validate_db_isolation


def test_public_api_is_pinned() -> None:
    assert pytest_livesandbox.__all__ == [
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


def test_errors_are_also_builtins() -> None:
    assert issubclass(StartupTimeout, TimeoutError) and issubclass(StartupTimeout, SandboxError)
    assert issubclass(MarkerError, ValueError)


def test_passwords_stay_out_of_public_views() -> None:
    db = DatabaseInfo("127.0.0.1", 5432, "app", "app", "pw-secret", "admin", "admin-secret")
    info = SandboxInfo("abc", "local", "run", "me", 1.0, db=db)
    public = json.dumps(info.public())
    assert "pw-secret" not in public and "admin-secret" not in public
    assert "pw-secret" not in repr(info)
    assert db.redacted_dsn == "postgresql://app:***@127.0.0.1:5432/app"
    assert SandboxInfo.from_json(info.to_json(secrets=True)) == info


@pytest.mark.parametrize(
    ("args", "kwargs", "ok"),
    [
        (("database",), {}, "database"),
        ((), {"mode": "transaction"}, "transaction"),
        (("tables",), {}, None),
        ((), {}, None),
        (("database",), {"scope": "module"}, None),
    ],
)
def test_db_isolation_marker(args, kwargs, ok) -> None:
    if ok:
        assert validate_db_isolation(args, kwargs) == ok
    else:
        with pytest.raises(MarkerError):
            validate_db_isolation(args, kwargs)

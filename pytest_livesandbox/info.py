"""What every backend produces: :class:`SandboxInfo`, plain JSON-serialisable data.

``SandboxInfo`` crosses the xdist controller/worker boundary and is written to reports; passwords
travel only in :meth:`SandboxInfo.to_json` with ``secrets=True`` and never appear in ``repr`` or
:meth:`SandboxInfo.public`::

    db = DatabaseInfo("127.0.0.1", 5432, "app", "app", "pw")
    info = SandboxInfo(id=new_sandbox_id(), backend="local", run_id="r1",
                       owner=default_owner(), created_at=time.time(), db=db)
    print(info.db.redacted_dsn)        # postgresql://app:***@127.0.0.1:5432/app
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

MANAGED_BY = "pytest-livesandbox"


def new_sandbox_id() -> str:
    """A short random id, usable in DNS names: ``3f9c2a1b``."""
    return secrets.token_hex(4)


def default_owner() -> str:
    """Who made the sandbox: the CI job when there is one, else ``user@host``."""
    for var in ("GITHUB_RUN_ID", "CI_JOB_ID", "BUILD_TAG"):
        if os.environ.get(var):
            return f"{var.lower()}-{os.environ[var]}"[:63]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:63]


class SecretUrl(str):
    """A connection URL that hides its password when shown (``repr``, pytest tracebacks).

    It is a plain ``str`` for every other use: ``psycopg.connect(url)`` gets the real thing.

    >>> SecretUrl("postgresql://app:pw@h:1/db")
    'postgresql://app:***@h:1/db'
    """

    def __repr__(self) -> str:
        head, at, tail = self.rpartition("@")
        if not at or "://" not in head:
            return str.__repr__(self)
        scheme, _, userinfo = head.partition("://")
        user = userinfo.split(":", 1)[0]
        return repr(f"{scheme}://{user}:***@{tail}")


@dataclass(frozen=True)
class DatabaseInfo:
    """Where the sandbox's PostgreSQL listens, and as whom to connect."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    admin_user: str = ""
    admin_password: str = field(default="", repr=False)

    def url(self, *, dbname: str | None = None, admin: bool = False, redact: bool = False) -> str:
        """A ``postgresql://`` URL; ``admin=True`` for the superuser, ``redact`` hides the password.

        >>> DatabaseInfo("127.0.0.1", 5432, "app", "app", "s3cret").url(redact=True)
        'postgresql://app:***@127.0.0.1:5432/app'
        """
        user = self.admin_user if admin else self.user
        password = self.admin_password if admin else self.password
        shown = "***" if redact else quote(password, safe="")
        name = dbname or self.dbname
        url = f"postgresql://{quote(user, safe='')}:{shown}@{self.host}:{self.port}/{name}"
        return url if redact else SecretUrl(url)

    @property
    def dsn(self) -> str:
        """The app role's URL, password included (hand it to code, never print it)."""
        return self.url()

    @property
    def redacted_dsn(self) -> str:
        """The app role's URL with the password replaced by ``***``."""
        return self.url(redact=True)


@dataclass
class SandboxInfo:
    """Plain data describing one sandbox; the same shape for every backend."""

    id: str
    backend: str
    run_id: str
    owner: str
    created_at: float
    endpoint: str | None = None
    db: DatabaseInfo | None = None
    namespace: str | None = None
    workdir: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, secrets: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; passwords only with ``secrets=True`` (worker handover)."""
        data = asdict(self)
        if self.db is not None and not secrets:
            data["db"]["password"] = ""
            data["db"]["admin_password"] = ""
            data["db"]["url"] = self.db.redacted_dsn
        return data

    def public(self) -> dict[str, Any]:
        """What reports and terminals may show: no secrets."""
        return self.to_json(secrets=False)

    def secret_values(self) -> list[str]:
        """The passwords this sandbox knows, for redaction of reports and artifacts."""
        if self.db is None:
            return []
        return [p for p in (self.db.password, self.db.admin_password) if p]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        db = fields.pop("db", None)
        if db is not None:
            db = {k: v for k, v in db.items() if k != "url"}
        return cls(**fields, db=DatabaseInfo(**db) if db else None)

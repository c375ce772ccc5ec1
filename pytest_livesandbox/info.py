"""What every backend produces: :class:`SandboxInfo`, plain JSON-serialisable data.

``SandboxInfo`` crosses the xdist controller/worker boundary and is written to reports; passwords
and :attr:`SandboxInfo.tokens` (e.g. the fault proxy's control token) travel only in
:meth:`SandboxInfo.to_json` with ``secrets=True`` and never appear in ``repr`` or
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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

MANAGED_BY = "pytest-livesandbox"


def new_sandbox_id() -> str:
    """A short random id, usable in DNS names: ``3f9c2a1b``."""
    return secrets.token_hex(4)


# CI job ids, most specific first: two jobs on one machine (a shared runner) get two owners.
CI_JOB_VARS = (
    ("GITHUB_RUN_ID", ("GITHUB_RUN_ATTEMPT", "GITHUB_JOB")),  # GitHub Actions
    ("CI_JOB_ID", ()),  # GitLab CI
    ("BUILDKITE_JOB_ID", ()),
    ("CIRCLE_WORKFLOW_JOB_ID", ()),
    ("SYSTEM_JOBID", ()),  # Azure Pipelines
    ("TRAVIS_JOB_ID", ()),
    ("BUILD_TAG", ()),  # Jenkins
    ("CODEBUILD_BUILD_ID", ()),
    ("BITBUCKET_BUILD_NUMBER", ("BITBUCKET_STEP_UUID",)),
)


def ci_job(env: Mapping[str, str] | None = None) -> str | None:
    """``<var>-<value>`` of the CI job this runs in (``env``: the environment), else ``None``.

    >>> ci_job({"CI_JOB_ID": "4711"}), ci_job({"GITHUB_RUN_ID": "9", "GITHUB_JOB": "test"})
    ('ci_job_id-4711', 'github_run_id-9-test')
    """
    env = os.environ if env is None else env
    for var, more in CI_JOB_VARS:
        if env.get(var):
            parts = [env[var], *(env[m] for m in more if env.get(m))]
            return f"{var.lower()}-{'-'.join(parts)}"
    return None


def default_owner() -> str:
    """Who made the sandbox: the CI job when there is one, else ``user@host``.

    The CI job id (``github_run_id-123-1-tests``, ``ci_job_id-4711``) tells apart two runs on
    one machine, so ``livesandbox gc --owner`` can clean up after exactly one of them.
    """
    job = ci_job()
    if job:
        return job[:63]
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
    #: secrets other than the database's, by name (``fault_proxy``: the control API's token);
    #: like the passwords: blanked in :meth:`public`, redacted from every report
    tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def to_json(self, *, secrets: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; passwords and tokens only with ``secrets=True`` (worker handover)."""
        data = asdict(self)
        if not secrets:
            data["tokens"] = dict.fromkeys(self.tokens, "")
        if self.db is not None and not secrets:
            data["db"]["password"] = ""
            data["db"]["admin_password"] = ""
            data["db"]["url"] = self.db.redacted_dsn
        return data

    def public(self) -> dict[str, Any]:
        """What reports and terminals may show: no secrets."""
        return self.to_json(secrets=False)

    def secret_values(self) -> list[str]:
        """The passwords and tokens this sandbox knows, for redaction of reports and artifacts."""
        tokens = [t for t in self.tokens.values() if t]
        if self.db is None:
            return tokens
        return [p for p in (self.db.password, self.db.admin_password) if p] + tokens

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        db = fields.pop("db", None)
        if db is not None:
            db = {k: v for k, v in db.items() if k != "url"}
        return cls(**fields, db=DatabaseInfo(**db) if db else None)

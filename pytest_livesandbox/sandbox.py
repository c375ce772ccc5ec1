"""The sandbox: what every backend produces (:class:`SandboxInfo`) and its lifecycle.

``SandboxInfo`` is plain JSON-serialisable data so it can cross the xdist controller/worker boundary
and be written to reports; passwords travel only in :meth:`SandboxInfo.to_json` with
``secrets=True`` and never appear in ``repr`` or :meth:`SandboxInfo.public`::

    with Sandbox(config) as sandbox:          # provisions; tears down on exit, also on Ctrl-C
        print(sandbox.info.endpoint, sandbox.info.db.redacted_dsn)
"""

from __future__ import annotations

import getpass
import importlib
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

from .errors import SandboxError
from .interrupts import shielded

if TYPE_CHECKING:
    from .config import SandboxConfig

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


class SandboxBackend(Protocol):
    """What each backend module provides (``backends/local.py``, ``backends/kube.py``, ...)."""

    name: str

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Bring a sandbox up and return its description; clean up fully before raising."""

    def teardown(self, info: SandboxInfo) -> None:
        """Remove everything :meth:`provision` made for ``info``."""

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """Write logs/events of the window ``[since, until]`` (Unix time) into ``dest``.

        Called in whichever process ran the failed test (xdist worker included), with a fresh
        backend instance: it must work from ``info`` alone. Returns the files written.
        """


@runtime_checkable
class LogOffsets(Protocol):
    """Optional backend capability: exact per-test log windows from byte offsets.

    For logs without timestamps (the local backend's ``app.log``) a time window cannot be cut
    exactly; the test's process notes each log's size when the test starts and ends instead, and
    :meth:`collect_between` copies what was appended in between. Backends without it get
    :meth:`SandboxBackend.collect_artifacts` with the time window.
    """

    def log_offsets(self, info: SandboxInfo) -> dict[str, int]:
        """Current size in bytes of each log, keyed by artifact file name (``app.log``)."""

    def collect_between(
        self, info: SandboxInfo, start: dict[str, int], end: dict[str, int], dest: Path
    ) -> list[Path]:
        """Write each log's bytes ``[start, end)`` into ``dest``; return the files written."""


@dataclass
class SandboxHealth:
    """What a cheap check of a running sandbox found (see :class:`HealthCheck`)."""

    #: One line per component that died: ``PostgreSQL of sandbox 3f9c2a1b exited ...``.
    problems: list[str] = field(default_factory=list)
    #: How often the app was restarted by its supervisor so far (``None``: not known).
    app_restarts: int | None = None


@runtime_checkable
class HealthCheck(Protocol):
    """Optional backend capability: does everything the sandbox started still run.

    Asked before and after every test (so it must take microseconds, not a round trip): a
    component that died from outside fails the next test with the reason instead of leaving it
    to fail with the app's own errors; app restarts outside any chaos fault are reported.
    """

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """The sandbox's state now."""


@runtime_checkable
class ConfigCheck(Protocol):
    """Optional backend capability: refuse settings it cannot use, before anything is made.

    Called at ``pytest_configure``; each returned line becomes part of one ``UsageError``
    (``--sandbox-db-dsn: the local backend starts its own PostgreSQL; ...``).
    """

    def config_problems(self, config: SandboxConfig) -> list[str]:
        """What is wrong with ``config`` for this backend (empty: nothing)."""


# backend name -> (module, class, pip extra that brings its dependencies)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "local": ("pytest_livesandbox.backends.local", "LocalBackend", ""),
    "docker": ("pytest_livesandbox.backends.docker", "DockerBackend", "docker"),
    "kube": ("pytest_livesandbox.backends.kube", "KubeBackend", "kube"),
    "gke": ("pytest_livesandbox.backends.gke", "GkeBackend", "kube"),
}


def backend_for(config: SandboxConfig) -> SandboxBackend:
    """The backend implementation named by ``config.backend`` (imported on first use)."""
    name = config.backend.value
    if name not in BACKENDS:
        raise SandboxError(f"--sandbox={name} has no backend; use one of {', '.join(BACKENDS)}")
    module_name, class_name, extra = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pytest_livesandbox"):
            raise SandboxError(f"--sandbox={name} is not available in this version") from None
        raise SandboxError(
            f"--sandbox={name} needs the package {exc.name!r}: "
            f"pip install 'pytest-livesandbox[{extra}]'"
        ) from None
    backend: SandboxBackend = getattr(module, class_name)()
    return backend


class Sandbox:
    """One sandbox and its lifecycle; the session fixture ``livesandbox`` yields it.

    ``owned=False`` (xdist workers, attach mode) means :meth:`stop` leaves it running.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        info: SandboxInfo | None = None,
        owned: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.owned = owned
        self.run_id = run_id or new_sandbox_id()
        self._info = info
        self._backend: SandboxBackend | None = None

    @property
    def info(self) -> SandboxInfo:
        """The running sandbox's description."""
        if self._info is None:
            raise SandboxError("the sandbox is not started")
        return self._info

    @property
    def started(self) -> bool:
        """True once provisioned (or attached)."""
        return self._info is not None

    def start(self) -> SandboxInfo:
        """Provision the sandbox (once); the backend cleans up itself if this fails."""
        if self._info is None:
            began = time.perf_counter()
            self._backend = backend_for(self.config)
            info = self._backend.provision(self.config, new_sandbox_id(), self.run_id)
            info.timings["ready_s"] = round(time.perf_counter() - began, 4)
            self._info = info
        return self._info

    def stop(self) -> None:
        """Tear the sandbox down unless it is not ours or ``keep`` is set."""
        info, self._info = self._info, None
        if info is None or not self.owned or self.config.keep:
            return
        backend = self._backend or backend_for(self.config)
        # Ctrl-C or SIGTERM now would leave PostgreSQL running: teardown finishes first.
        with shielded(f"tearing down sandbox {info.id}"):
            backend.teardown(info)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

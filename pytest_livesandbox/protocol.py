"""The one protocol every backend implements, and the records ``livesandbox ls/gc/down`` show.

A backend is a package under ``backends/`` (or a third party's) with a class that satisfies
:class:`Backend`; it is found through the ``pytest_livesandbox.backends`` entry-point group, so
nothing outside the backend asks which backend it is: it asks the backend what it can do::

    [project.entry-points."pytest_livesandbox.backends"]
    eks = "acme_livesandbox_eks:EksBackend [kube]"

    class EksBackend(KubeBackend):          # a subclass inherits provision, chaos and cleanup
        name = "eks"

The chaos hooks read :attr:`Backend.supported_faults` (and :meth:`Backend.fault_problems` for
what depends on the machine) at collection; the CLI calls :meth:`Backend.list_sandboxes` and
:meth:`Backend.reap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .chaos.driver import ChaosDriver
    from .chaos.markers import ChaosPlan
    from .config import SandboxConfig
    from .info import SandboxInfo


@dataclass(frozen=True)
class ListScope:
    """Where the CLI looks for sandboxes (backends use what applies to them)."""

    kubeconfig: Path | None = None
    context: str | None = None
    required: bool = False  # the user named a cluster: failing to reach it is an error


@dataclass
class SandboxRecord:
    """One sandbox as ``livesandbox ls`` shows it.

    ``status`` is ``running`` (its pytest still runs: never reaped), ``kept``, ``expired``,
    ``orphaned`` (its pytest is gone), ``warm`` (kept for ``--sandbox-reuse``), ``lapsed``
    (its lease ran out), or a backend's own word (``active``, ``terminating``).
    ``reapable`` says whether ``gc`` removes it without ``--older-than``.
    """

    id: str
    backend: str
    status: str
    age: float
    owner: str
    where: str
    expires_in: float | None = None
    reapable: bool = False
    protected: bool = False  # never reaped by gc (running, already terminating)
    aliases: tuple[str, ...] = ()  # other names `down` accepts (a kube namespace)
    lease_expires_in: float | None = None  # seconds (negative: lapsed); None: no lease
    reuse_key: str = ""  # a warm sandbox's reuse key (``--sandbox-reuse``)
    handle: Any = field(default=None, repr=False)  # the backend's own data for reap()


class Backend(Protocol):
    """What each backend provides (``backends/local``, ``backends/kube``, ...)."""

    name: ClassVar[str]
    supported_faults: ClassVar[frozenset[str]]  # Fault.kind values its chaos driver injects

    def check_config(self, config: SandboxConfig) -> list[str]:
        """Settings this backend cannot honour (a ``UsageError`` at configure; no connecting)."""

    def provision(self, config: SandboxConfig, sandbox_id: str, run_id: str) -> SandboxInfo:
        """Bring a sandbox up (or attach to one) and describe it; clean up fully before raising."""

    def teardown(self, info: SandboxInfo) -> None:
        """Remove everything :meth:`provision` made for ``info`` (never an attached sandbox)."""

    def collect_artifacts(
        self, info: SandboxInfo, since: float, until: float, dest: Path
    ) -> list[Path]:
        """Write logs/events of the window ``[since, until]`` (Unix time) into ``dest``.

        Called in whichever process ran the failed test (xdist worker included), with a fresh
        backend instance: it must work from ``info`` alone. Returns the files written.
        """

    def chaos(self, info: SandboxInfo, owner: str) -> ChaosDriver:
        """The driver that injects faults into the running sandbox ``info``."""

    def fault_problems(self, plan: ChaosPlan, config: SandboxConfig) -> list[str]:
        """Why this machine or configuration cannot inject ``plan``'s supported faults."""

    def list_sandboxes(self, scope: ListScope) -> list[SandboxRecord]:
        """The sandboxes of this backend (only those carrying our ownership marks)."""

    def reap(self, record: SandboxRecord) -> None:
        """Remove one listed sandbox (the CLI has checked it may)."""

    def renew_lease(self, info: SandboxInfo, until: float) -> None:
        """Extend this run's lease on ``info`` to ``until`` (Unix time); called every few seconds.

        The lease is also written when provisioning starts (with room for the start-up), so a
        run killed at any point leaves a sandbox whose lease lapses.
        """

    def reuse_parts(self, config: SandboxConfig) -> dict[str, str]:
        """What shapes this backend's sandboxes beyond the shared options, for the reuse key.

        E.g. the PostgreSQL version, images, a digest of the manifests.
        """

    def rolls_builds(self, config: SandboxConfig) -> bool:
        """True when a changed ``--sandbox-build`` rolls into a warm sandbox of ``config``.

        Then the builds' content is not part of the reuse key (kube: only the rebuilt
        workloads change); False makes each content a sandbox of its own.
        """

    def claim_warm(
        self, config: SandboxConfig, key: str, run_id: str, until: float
    ) -> SandboxInfo | None:
        """Claim a warm sandbox with reuse key ``key`` (or one whose holder's lease lapsed).

        A compare-and-set: of two runs at once only one wins a given sandbox. Returns it
        attached (endpoints reachable, passwords filled in) and leased to ``run_id`` until
        ``until``; ``None`` when there is none to claim.
        """

    def keep_warm(self, info: SandboxInfo, until: float) -> None:
        """Hand the run's sandbox back at its end, leased until ``until``.

        Warm (claimable by its reuse key) when ``info.extra["reuse_key"]`` is set, else kept
        (``--sandbox-keep``: nobody claims it, it lapses with its TTL).
        """

    def heal(self, info: SandboxInfo, config: SandboxConfig) -> dict[str, Any]:
        """Make a reused sandbox's app answer its health check (restarted only if it fails).

        Returns what was done, for the report (``{"app_restarted": False}``).
        """


@dataclass(frozen=True)
class ReaperOptions:
    """``livesandbox reaper install`` settings (empty: the backend's defaults)."""

    namespace: str = ""
    image: str = ""
    schedule: str = ""
    selector: str = ""  # an extra label selector: reap only these (tests scope it to theirs)
    suspend: bool = False  # installed but not scheduled (run by hand: a Job from its template)


@runtime_checkable
class InClusterReaper(Protocol):
    """Optional backend capability: a reaper that runs inside the cluster (``livesandbox reaper``).

    It removes sandboxes whose lease lapsed or TTL passed even when nobody runs ``gc``.
    """

    def install_reaper(self, scope: ListScope, options: ReaperOptions) -> list[str]:
        """Install or update it; returns what was applied (``kind/name``)."""

    def uninstall_reaper(self, scope: ListScope, options: ReaperOptions) -> None:
        """Remove what :meth:`install_reaper` made."""


@runtime_checkable
class LogOffsets(Protocol):
    """Optional backend capability: exact per-test log windows from byte offsets.

    For logs without timestamps (the local backend's ``app.log``) a time window cannot be cut
    exactly; the test's process notes each log's size when the test starts and ends instead, and
    :meth:`collect_between` copies what was appended in between. Backends without it get
    :meth:`Backend.collect_artifacts` with the time window.
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

    Asked before and after every test (so it must be cheap: no more than one local API call): a
    component that died from outside fails the next test with the reason instead of leaving it
    to fail with the app's own errors; app restarts outside any chaos fault are reported.
    """

    def health(self, info: SandboxInfo) -> SandboxHealth:
        """The sandbox's state now."""


def unsupported_fault_hint(backend: Backend, kind: str) -> str:
    """Why ``backend`` refuses fault ``kind``: its own ``fault_hints`` entry, or a generic line."""
    hints: dict[str, str] = getattr(backend, "fault_hints", {})
    return hints.get(kind) or f"the {backend.name} backend cannot inject {kind!r}"


def own_sandbox_refusals(config: SandboxConfig, backend: str, postgres: str) -> list[str]:
    """The refusals of a backend that always makes its own sandbox and database (one wording).

    ``postgres`` says what runs its PostgreSQL; used in ``check_config``::

        problems = own_sandbox_refusals(config, "docker", "PostgreSQL container")
    """
    problems = []
    if config.attach:
        problems.append(
            f"--sandbox-attach: the {backend} backend cannot attach to a sandbox; keep one with "
            "--sandbox-keep (`livesandbox ls` lists it) or reuse one with --sandbox-reuse, or use "
            "--sandbox=kube to attach to a namespace"
        )
    if config.db_dsn:
        problems.append(
            f"--sandbox-db-dsn: the {backend} backend always runs its own {postgres}; "
            "drop the option or use --sandbox=kube"
        )
    return problems


def reap_reason(record: SandboxRecord, older_than: float | None = None) -> str | None:
    """Why ``livesandbox gc`` removes ``record`` (``None``: it stays).

    Protected sandboxes (their pytest still runs) always stay; reapable ones (orphaned, expired)
    go; with ``older_than`` (seconds) older ones go too.

    >>> reap_reason(SandboxRecord("a", "local", "kept", age=90, owner="me", where="-"), 60)
    'older than 60s'
    """
    if record.protected:
        return None
    if record.reapable:
        return record.status
    if older_than is not None and record.age > older_than:
        return f"older than {older_than:g}s"
    return None

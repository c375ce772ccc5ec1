"""Names, labels and safety rules of sandbox namespaces (pure functions, no API calls).

>>> namespace_name("sandbox", "3f9c2a1b")
'sandbox-3f9c2a1b'
>>> label_value("ci@runner-7.example.com")
'ci_runner-7.example.com'
>>> looks_like_production("gke_acme_europe-west1_prod", "https://10.0.0.1")
True
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ConfigError, UnsafeTarget
from ...info import MANAGED_BY
from ...lease import Lease

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
RUN_ID_LABEL = "livesandbox/run-id"
SANDBOX_ID_LABEL = "livesandbox/id"
OWNER_LABEL = "livesandbox/owner"
GIT_SHA_LABEL = "livesandbox/git-sha"
BACKEND_LABEL = "livesandbox/backend"  # kube, gke, or a subclass's name: who lists it in `ls`
EXPIRES_AT = "livesandbox/expires-at"
# The lease (renewed by the running pytest; see pytest_livesandbox.lease) and the reuse key.
LEASE_EXPIRES_AT = "livesandbox/lease-expires-at"
LEASE_HOLDER = "livesandbox/lease-holder"
LEASE_STATE = "livesandbox/lease-state"
REUSE_KEY_LABEL = "livesandbox/reuse-key"
# On a namespace whose app an Argo CD Application deployed: "<argocd namespace>/<application>".
ARGOCD_APP_ANNOTATION = "livesandbox/argocd-application"
COMPONENT_LABEL = "app.kubernetes.io/component"
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# "prod", "production", "prd" or "live" as a word of the name: my-prod-cluster, gke_x_y_production,
# prod.example.com; not "livesandbox" or "product-demo".
_PRODUCTION = re.compile(r"(?:^|[^a-z0-9])(?:prod|production|prd|live)(?:[^a-z0-9]|$)")
URL_FIELDS = ("id", "namespace", "run_id")


def namespace_name(prefix: str, sandbox_id: str) -> str:
    """``<prefix>-<id>``; raises :class:`ConfigError` when that is no valid namespace name."""
    name = f"{prefix}-{sandbox_id}"
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ConfigError(
            f"--sandbox-namespace-prefix {prefix!r} does not make a valid namespace name "
            f"({name!r}); use lower-case letters, digits and '-', at most {62 - len(sandbox_id)} "
            "characters"
        )
    return name


def label_value(text: str) -> str:
    """``text`` made into a valid label value: [A-Za-z0-9._-], at most 63, alphanumeric ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63]
    return cleaned.strip("._-")


def sandbox_labels(
    sandbox_id: str, run_id: str, owner: str, git_sha: str | None = None, backend: str = "kube"
) -> dict[str, str]:
    """The labels every sandbox namespace carries; ``managed-by`` marks it as ours."""
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        BACKEND_LABEL: label_value(backend),
        SANDBOX_ID_LABEL: sandbox_id,
        RUN_ID_LABEL: label_value(run_id),
        OWNER_LABEL: label_value(owner),
    }
    if git_sha:
        labels[GIT_SHA_LABEL] = label_value(git_sha)[:40]
    return labels


def is_ours(labels: Mapping[str, str] | None) -> bool:
    """True when the object carries our ``managed-by`` label."""
    return bool(labels) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY  # type: ignore[union-attr]


def expires_at(ttl: float, now: float | None = None) -> str:
    """The ``livesandbox/expires-at`` annotation value: RFC 3339 UTC, ``ttl`` seconds from now."""
    moment = datetime.fromtimestamp((now if now is not None else time.time()) + ttl, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expires_at(value: str | None) -> float | None:
    """The Unix time of an ``expires-at`` annotation; ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def lease_annotations(lease: Lease) -> dict[str, str]:
    """The namespace annotations that hold ``lease``.

    >>> lease_annotations(Lease("held", "r1", 0.0))[LEASE_EXPIRES_AT]
    '1970-01-01T00:00:00Z'
    """
    return {
        LEASE_STATE: lease.state,
        LEASE_HOLDER: lease.holder,
        LEASE_EXPIRES_AT: expires_at(0, now=lease.expires_at),
    }


def lease_of(annotations: Mapping[str, str], labels: Mapping[str, str]) -> Lease | None:
    """The lease a namespace's annotations hold (``None``: made before leases existed)."""
    until = parse_expires_at(annotations.get(LEASE_EXPIRES_AT))
    state = annotations.get(LEASE_STATE)
    if until is None or state not in ("held", "warm", "kept"):
        return None
    return Lease(
        "warm" if state == "warm" else "kept" if state == "kept" else "held",
        annotations.get(LEASE_HOLDER, ""),
        until,
        key=labels.get(REUSE_KEY_LABEL, ""),
    )


def looks_like_production(context: str, server: str) -> bool:
    """True when the context name or API server address contains a production-like word."""
    return any(_PRODUCTION.search(text.lower()) for text in (context, server) if text)


def check_context_allowed(context: str, server: str, allow: str | None) -> None:
    """Refuse a production-looking context unless ``--sandbox-allow-context`` matches it.

    Raises :class:`UnsafeTarget` naming the context and how to allow it.
    """
    if not looks_like_production(context, server):
        return
    if allow:
        try:
            pattern = re.compile(allow)
        except re.error as exc:
            raise ConfigError(f"--sandbox-allow-context {allow!r} is not a regex: {exc}") from None
        if pattern.search(context) or pattern.search(server):
            return
    raise UnsafeTarget(
        f"refusing kube context {context!r} (server {server}): its name looks like production "
        "(prod/production/prd/live). Sandboxes belong on a dev or CI cluster: pick another context "
        "with --sandbox-context, or, if this cluster really is meant for sandboxes, allow it with "
        f"--sandbox-allow-context '^{re.escape(context)}$' (ini livesandbox_allow_context)."
    )


def render_url_template(template: str, *, sandbox_id: str, namespace: str, run_id: str) -> str:
    """Fill ``{id}``, ``{namespace}`` and ``{run_id}`` into ``--sandbox-url-template``.

    >>> render_url_template("https://sandbox-{id}.dev.example.com", sandbox_id="3f9c",
    ...                     namespace="sandbox-3f9c", run_id="r1")
    'https://sandbox-3f9c.dev.example.com'
    """
    check_url_template(template)
    return template.format(id=sandbox_id, namespace=namespace, run_id=run_id).rstrip("/")


def check_url_template(template: str) -> None:
    """Raise :class:`ConfigError` for unknown placeholders or a missing scheme."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"--sandbox-url-template {template!r}: {exc}") from None
    unknown = fields - set(URL_FIELDS)
    if unknown:
        raise ConfigError(
            f"--sandbox-url-template {template!r} has unknown placeholder(s) "
            f"{', '.join('{' + f + '}' for f in sorted(unknown))}; use "
            f"{', '.join('{' + f + '}' for f in URL_FIELDS)} (write your domain literally)"
        )
    if not fields & {"id", "namespace"}:
        raise ConfigError(
            f"--sandbox-url-template {template!r} has no {{id}}: every sandbox would get the same "
            "URL; put {id} into the host, e.g. https://sandbox-{id}.dev.example.com"
        )
    if not re.match(r"^https?://", template):
        raise ConfigError(
            f"--sandbox-url-template {template!r} must start with http:// or https://"
        )


def git_sha(cwd: Path) -> str | None:
    """The commit under test: from CI variables, else ``git rev-parse HEAD`` in ``cwd``."""
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None

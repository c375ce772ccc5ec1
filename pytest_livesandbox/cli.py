"""``livesandbox``: list, reap and remove sandboxes this plugin made.

    livesandbox ls                       # id, backend, status, age, expiry, owner, endpoint
    livesandbox gc [--older-than 2h] [--dry-run]
    livesandbox down 3f9c2a1b            # a sandbox id, or the namespace of a kube sandbox

Only sandboxes carrying our ownership mark (``managed_by: pytest-livesandbox`` in their state file,
the ``app.kubernetes.io/managed-by`` label on docker containers, networks, volumes and kube
namespaces) are ever touched. ``gc`` removes sandboxes whose pytest process is gone (a ``kill -9``,
a crashed CI runner) unless they were kept on purpose; kept ones once they pass their expiry
(``expires_at`` in the state file, ``livesandbox/expires-at`` on docker and kube: creation plus
``--sandbox-ttl``), and with ``--older-than`` also older ones. A sandbox whose pytest still runs is
never reaped. Kube sandboxes are listed when a kubeconfig is found (``--kubeconfig``/``--context``,
else ``$KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .backends.local import STATE_FILE, LocalBackend
from .config import parse_duration
from .errors import SandboxError, UnsafeTarget
from .locations import state_root
from .processes import process_alive
from .sandbox import MANAGED_BY, SandboxInfo


@dataclass
class LocalRecord:
    """One local sandbox as its state file describes it."""

    path: Path
    state: dict[str, Any]

    @property
    def id(self) -> str:
        """The sandbox id."""
        return str(self.state["id"])

    @property
    def age(self) -> float:
        """Seconds since creation."""
        return time.time() - float(self.state.get("created_at", 0))

    @property
    def orphaned(self) -> bool:
        """True when the pytest process that made it is gone."""
        return not process_alive(
            int(self.state.get("pytest_pid", 0)), self.state.get("pytest_started")
        )

    @property
    def expires_in(self) -> float | None:
        """Seconds until ``expires_at`` (negative once expired); ``None`` if it has none."""
        expires_at = self.state.get("expires_at")
        return None if expires_at is None else float(expires_at) - time.time()

    @property
    def expired(self) -> bool:
        """True once past ``expires_at``."""
        return self.expires_in is not None and self.expires_in <= 0

    @property
    def status(self) -> str:
        """``running``, ``kept``, ``expired`` or ``orphaned``."""
        if not self.orphaned:
            return "running"
        if self.state.get("keep"):
            return "expired" if self.expired else "kept"
        return "orphaned"

    def info(self) -> SandboxInfo:
        """The state as :class:`SandboxInfo` (for teardown)."""
        known = SandboxInfo.__dataclass_fields__
        return SandboxInfo.from_json({k: v for k, v in self.state.items() if k in known})


def local_records() -> list[LocalRecord]:
    """Every local sandbox folder with our ownership mark."""
    records = []
    for state_path in sorted(state_root().glob(f"*/{STATE_FILE}")):
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("managed_by") == MANAGED_BY and state.get("id") == state_path.parent.name:
            records.append(LocalRecord(state_path.parent, state))
    return records


def docker_sandboxes() -> tuple[Any, list[Any]]:
    """``(client, records)`` of docker sandboxes; nothing without the docker extra or a daemon."""
    try:
        from .backends.docker_resources import docker_records
        from .dockerhost import connect
    except ImportError:
        return None, []
    try:
        client = connect()
    except SandboxError:
        if os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock"):
            print(
                "livesandbox: no Docker daemon answered; docker sandboxes skipped", file=sys.stderr
            )
        return None, []
    return client, docker_records(client)


def remove_docker_sandbox(client: Any, sandbox_id: str) -> None:
    """Remove a docker sandbox's labelled resources and its local folder."""
    from .backends.docker_resources import remove_sandbox

    remove_sandbox(client, sandbox_id)
    shutil.rmtree(state_root() / sandbox_id, ignore_errors=True)


def _format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _format_expiry(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return f"{_format_age(-seconds)} ago"
    return f"in {_format_age(seconds)}"


def _label_expires_in(labels: dict[str, str]) -> float | None:
    text = labels.get("livesandbox/expires-at")
    try:
        return datetime.fromisoformat(text).timestamp() - time.time() if text else None
    except ValueError:
        return None


def cmd_ls(args: argparse.Namespace) -> int:
    """Print one line per sandbox."""
    records = [r for r in local_records() if _wanted(args, "local", r.state.get("owner"))]
    print(
        f"{'ID':<10} {'BACKEND':<8} {'STATUS':<9} {'AGE':>6}  {'EXPIRES':<12} {'OWNER':<24} "
        "ENDPOINT"
    )
    for rec in records:
        print(
            f"{rec.id:<10} {rec.state.get('backend', '?'):<8} {rec.status:<9} "
            f"{_format_age(rec.age):>6}  {_format_expiry(rec.expires_in):<12} "
            f"{rec.state.get('owner', '?'):<24} {rec.state.get('endpoint') or '-'}"
        )
    for drec in _docker_records(args):
        print(
            f"{drec.id:<10} {drec.backend:<8} {drec.status:<9} {_format_age(drec.age):>6}  "
            f"{_format_expiry(_label_expires_in(drec.labels)):<12} "
            f"{drec.owner:<24} {drec.endpoint or '-'}"
        )
    cluster = _kube(args) if _backend_wanted(args, "kube") else None
    if cluster is not None:
        from .kube.namespace import list_sandboxes

        for ns in list_sandboxes(cluster.core):
            if not _wanted(args, "kube", ns.owner):
                continue
            status = "expired" if ns.expired else ns.phase.lower()
            expires_in = None if ns.expires_at is None else ns.expires_at - time.time()
            print(
                f"{ns.sandbox_id:<10} {'kube':<8} {status:<9} {_format_age(ns.age):>6}  "
                f"{_format_expiry(expires_in):<12} "
                f"{ns.owner:<24} namespace/{ns.name} ({cluster.context})"
            )
    return 0


def _backend_wanted(args: argparse.Namespace, backend: str) -> bool:
    """``--backend`` is unset or names ``backend``."""
    return not getattr(args, "backend", None) or backend == args.backend


def _wanted(args: argparse.Namespace, backend: str, owner: str | None) -> bool:
    """Apply ``--backend`` and ``--owner`` to one sandbox."""
    wanted_owner = getattr(args, "owner", None)
    return _backend_wanted(args, backend) and (not wanted_owner or owner == wanted_owner)


def _docker_records(args: argparse.Namespace) -> list[Any]:
    if not _backend_wanted(args, "docker"):
        return []
    return [d for d in docker_sandboxes()[1] if _wanted(args, "docker", d.owner)]


def _kube(args: argparse.Namespace, required: bool = False) -> Any:
    """A connection to the kubeconfig's cluster, or None (with a note) when there is none."""
    try:
        from .kube.client import connect, kubeconfig_files
    except ImportError:
        if required:
            raise
        return None
    explicit = Path(args.kubeconfig) if args.kubeconfig else None
    if not required and not any(f.is_file() for f in kubeconfig_files(explicit)):
        return None
    try:
        return connect(
            kubeconfig=explicit, context=args.context, allow_context=None, check_production=False
        )
    except SandboxError as exc:
        if required:
            raise
        print(f"kube sandboxes not listed: {exc}", file=sys.stderr)
        return None


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove orphaned sandboxes (and, with --older-than, old ones)."""
    older_than = parse_duration(args.older_than) if args.older_than else None
    removed = 0
    for rec in local_records():
        if not _wanted(args, "local", rec.state.get("owner")):
            continue
        old = older_than is not None and rec.age > older_than
        if rec.status == "running" or not (rec.status in {"orphaned", "expired"} or old):
            continue
        reason = (
            rec.status if rec.status in {"orphaned", "expired"} else f"older than {args.older_than}"
        )
        verb = "would remove" if args.dry_run else "removing"
        print(f"{verb} {rec.id} ({reason})")
        if not args.dry_run:
            LocalBackend().teardown(rec.info())
            removed += 1
    client, records = docker_sandboxes() if _backend_wanted(args, "docker") else (None, [])
    for drec in records:
        if not _wanted(args, "docker", drec.owner) or not drec.reapable(older_than):
            continue
        reason = drec.status if drec.status != "kept" else f"older than {args.older_than}"
        print(f"{'would remove' if args.dry_run else 'removing'} {drec.id} (docker, {reason})")
        if not args.dry_run:
            remove_docker_sandbox(client, drec.id)
            removed += 1
    cluster = _kube(args) if _backend_wanted(args, "kube") else None
    if cluster is not None:
        from .kube.namespace import delete_namespace, list_sandboxes

        for ns in list_sandboxes(cluster.core):
            if not _wanted(args, "kube", ns.owner):
                continue
            old = older_than is not None and ns.age > older_than
            if not (ns.expired or old) or ns.phase == "Terminating":
                continue
            reason = "expired" if ns.expired else f"older than {args.older_than}"
            verb = "would remove" if args.dry_run else "removing"
            print(f"{verb} namespace {ns.name} ({reason})")
            if not args.dry_run:
                delete_namespace(cluster.core, ns.name, sandbox_id=ns.sandbox_id)
                removed += 1
    print(f"{removed} sandbox(es) removed")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Remove one sandbox by id."""
    for rec in local_records():
        if rec.id == args.id:
            LocalBackend().teardown(rec.info())
            print(f"removed {rec.id}")
            return 0
    client, records = docker_sandboxes()
    for drec in records:
        if drec.id == args.id:
            remove_docker_sandbox(client, drec.id)
            print(f"removed {drec.id} (docker)")
            return 0
    cluster = _kube(args, required=bool(args.kubeconfig or args.context))
    if cluster is not None:
        from .kube.namespace import delete_namespace, list_sandboxes

        for ns in list_sandboxes(cluster.core):
            if args.id in (ns.name, ns.sandbox_id):
                delete_namespace(cluster.core, ns.name, sandbox_id=ns.sandbox_id)
                print(f"removed namespace {ns.name}")
                return 0
    message = f"no sandbox {args.id!r} of ours here (see `livesandbox ls`)"
    if (state_root() / args.id / STATE_FILE).is_file():
        message = (
            f"{state_root() / args.id} has no ownership mark (managed_by: {MANAGED_BY}) in its "
            "state file: not ours"
        )
    print(f"{message}; nothing was touched", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="livesandbox", description="List and clean up pytest-livesandbox sandboxes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list sandboxes")
    ls.set_defaults(func=cmd_ls)
    gc = sub.add_parser("gc", help="remove orphaned (and old) sandboxes")
    gc.add_argument("--older-than", help="also remove sandboxes older than this (e.g. 2h)")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    gc.set_defaults(func=cmd_gc)
    down = sub.add_parser("down", help="remove one sandbox")
    down.add_argument("id", help="sandbox id, or the namespace of a kube sandbox")
    down.set_defaults(func=cmd_down)
    for command in (ls, gc):
        command.add_argument(
            "--backend", choices=("local", "docker", "kube"), help="only this backend's sandboxes"
        )
        command.add_argument(
            "--owner", help="only sandboxes made by this owner (as `ls` shows it, e.g. a CI job)"
        )
    for command in (ls, gc, down):
        command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
        command.add_argument("--context", help="kube context (default: the current one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livesandbox`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UnsafeTarget as exc:
        print(f"livesandbox: {exc}", file=sys.stderr)
        return 1
    except (ValueError, SandboxError) as exc:
        print(f"livesandbox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

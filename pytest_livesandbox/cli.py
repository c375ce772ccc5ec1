"""``livesandbox``: list, reap and remove sandboxes this plugin made, on every backend.

    livesandbox ls [--backend B] [--owner O]     # id, backend, status, age, expiry, lease, reuse
                                                  # key, owner, where
    livesandbox gc [--older-than 2h] [--dry-run] [--backend B] [--owner O]
    livesandbox down 3f9c2a1b                         # a sandbox id, or a kube sandbox's namespace
    livesandbox reaper install --backend kube         # a CronJob reaping lapsed namespaces
    livesandbox warm --count 2 -- --sandbox=kube ...  # a pool of warm sandboxes runs claim

Each registered backend lists its own sandboxes and removes them (:meth:`Backend.list_sandboxes`,
:meth:`Backend.reap`); only those carrying our ownership marks are ever listed (``managed_by`` in
a local state file, the ``app.kubernetes.io/managed-by`` label on docker resources and kube
namespaces). ``gc`` removes what a backend marks reapable (its pytest is gone, its lease lapsed, or
it passed its expiry: creation plus ``--sandbox-ttl``) and, with ``--older-than``, older ones; a
sandbox whose pytest still runs is never reaped. Warm sandboxes (``--sandbox-reuse``) are listed
with status ``warm`` and their reuse key until their lease lapses. Kube sandboxes are listed when
a kubeconfig is found (``--kubeconfig``/``--context``, else ``$KUBECONFIG`` or
``~/.kube/config``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .backends import available_backends
from .config import backend_names, parse_duration
from .errors import ConfigError, SandboxError, UnsafeTarget
from .pool import config_from, top_up
from .protocol import (
    Backend,
    InClusterReaper,
    ListScope,
    ReaperOptions,
    SandboxRecord,
    reap_reason,
)


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


def _scope(args: argparse.Namespace, *, required: bool = False) -> ListScope:
    return ListScope(
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        context=args.context,
        required=required,
    )


def _records(args: argparse.Namespace, scope: ListScope) -> Iterator[tuple[Backend, SandboxRecord]]:
    """Every backend's sandboxes, filtered by ``--backend`` and ``--owner``."""
    wanted_backend = getattr(args, "backend", None)
    wanted_owner = getattr(args, "owner", None)
    for backend in available_backends():
        if wanted_backend and backend.name != wanted_backend:
            continue
        try:
            records = backend.list_sandboxes(scope)
        except SandboxError as exc:
            if scope.required:
                raise
            print(f"livesandbox: {backend.name} sandboxes not listed: {exc}", file=sys.stderr)
            continue
        for record in records:
            if not wanted_owner or record.owner == wanted_owner:
                yield backend, record


def cmd_ls(args: argparse.Namespace) -> int:
    """Print one line per sandbox."""
    print(
        f"{'ID':<10} {'BACKEND':<8} {'STATUS':<9} {'AGE':>6}  {'EXPIRES':<12} {'LEASE':<12} "
        f"{'KEY':<16} {'OWNER':<24} WHERE"
    )
    for _, rec in _records(args, _scope(args)):
        print(
            f"{rec.id:<10} {rec.backend:<8} {rec.status:<9} {_format_age(rec.age):>6}  "
            f"{_format_expiry(rec.expires_in):<12} {_format_expiry(rec.lease_expires_in):<12} "
            f"{rec.reuse_key or '-':<16} {rec.owner:<24} {rec.where}"
        )
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove reapable sandboxes (and, with --older-than, old ones)."""
    older_than = parse_duration(args.older_than) if args.older_than else None
    removed = 0
    for backend, rec in list(_records(args, _scope(args))):
        reason = reap_reason(rec, older_than)
        if reason is None:
            continue
        verb = "would remove" if args.dry_run else "removing"
        print(f"{verb} {rec.id} ({rec.backend}, {reason})")
        if not args.dry_run:
            backend.reap(rec)
            removed += 1
    print(f"{removed} sandbox(es) removed")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Remove one sandbox by id (or by another name its backend lists, e.g. a namespace)."""
    scope = _scope(args, required=bool(args.kubeconfig or args.context))
    for backend, rec in _records(args, scope):
        if args.id == rec.id or args.id in rec.aliases:
            backend.reap(rec)
            print(f"removed {rec.id} ({rec.backend}, {rec.where})")
            return 0
    message = f"no sandbox {args.id!r} of ours here (see `livesandbox ls`)"
    for backend in available_backends():
        hint = getattr(backend, "unowned_hint", None)
        found = hint(args.id) if hint is not None else None
        if found:
            message = found
    print(f"{message}; nothing was touched", file=sys.stderr)
    return 1


def cmd_reaper(args: argparse.Namespace) -> int:
    """Install or remove the in-cluster reaper of a backend that has one."""
    backends = [b for b in available_backends() if b.name == args.backend]
    if not backends or not isinstance(backends[0], InClusterReaper):
        with_reaper = [b.name for b in available_backends() if isinstance(b, InClusterReaper)]
        print(
            f"livesandbox: the {args.backend} backend has no in-cluster reaper; "
            f"backends with one: {', '.join(with_reaper) or 'none installed'}",
            file=sys.stderr,
        )
        return 2
    backend: InClusterReaper = backends[0]
    options = ReaperOptions(
        namespace=args.namespace or "",
        image=args.image or "",
        schedule=args.schedule or "",
        selector=args.selector or "",
        suspend=args.suspend,
    )
    scope = _scope(args, required=True)
    if args.action == "install":
        for applied in backend.install_reaper(scope, options):
            print(f"applied {applied}")
    else:
        backend.uninstall_reaper(scope, options)
        print("reaper removed")
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    """Provision warm sandboxes until ``--count`` of the settings' reuse key wait."""
    config = config_from(args.sandbox_args, Path(args.rootdir))
    if not config.enabled:
        print("livesandbox: no backend: pass --sandbox=NAME after --", file=sys.stderr)
        return 2
    for sandbox_id in top_up(config, args.count, args.exclude or ""):
        print(f"warm {sandbox_id} ({config.backend})")
    print(f"{args.count} warm sandbox(es) of this key are ready")
    return 0


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
            "--backend", choices=backend_names(), help="only this backend's sandboxes"
        )
        command.add_argument(
            "--owner", help="only sandboxes made by this owner (as `ls` shows it, e.g. a CI job)"
        )
    reaper = sub.add_parser("reaper", help="install/remove the in-cluster reaper (a CronJob)")
    reaper.add_argument("action", choices=("install", "uninstall"))
    reaper.add_argument("--backend", required=True, choices=backend_names(), help="e.g. kube")
    reaper.add_argument("--namespace", help="where it runs (default: livesandbox-system)")
    reaper.add_argument("--image", help="its image (default: localhost/livesandbox/reaper:1)")
    reaper.add_argument("--schedule", help="cron schedule (default: every 2 minutes)")
    reaper.add_argument("--selector", help="extra label selector: reap only these namespaces")
    reaper.add_argument("--suspend", action="store_true", help="install, but do not schedule")
    reaper.set_defaults(func=cmd_reaper)
    warm = sub.add_parser("warm", help="pre-provision warm sandboxes (a pool runs claim)")
    warm.add_argument("--count", type=int, required=True, help="how many should wait")
    warm.add_argument("--rootdir", default=".", help="where the pytest ini file is")
    warm.add_argument("--exclude", help="a sandbox id not to count (one a run just claimed)")
    warm.add_argument(
        "sandbox_args", nargs=argparse.REMAINDER, help="-- then the run's --sandbox-* options"
    )
    warm.set_defaults(func=cmd_warm)
    for command in (ls, gc, down, reaper):
        command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
        command.add_argument("--context", help="kube context (default: the current one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livesandbox`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "sandbox_args", None) and args.sandbox_args[0] == "--":
        args.sandbox_args = args.sandbox_args[1:]
    try:
        return int(args.func(args))
    except UnsafeTarget as exc:
        print(f"livesandbox: {exc}", file=sys.stderr)
        return 1
    except (ValueError, SandboxError, ConfigError) as exc:
        print(f"livesandbox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The migration command (``--sandbox-migrate-cmd``): run once before the app, output to a log.

Every backend runs it its own way (local: a subprocess in the app's folder; docker: a container
of the app's image; kube: a Job) and reports a failure the same way, through
:func:`migration_failed`::

    seconds = run_local(("alembic", "upgrade", "head"), cwd=app_dir, env=env,
                        log=workdir / "migrate.log", timeout=60)

The command gets ``DATABASE_URL`` (the app role, straight to PostgreSQL, never through the fault
proxy) and nothing else of the sandbox. The isolation template (``db_isolation("database")``,
``live_db_factory``) is copied from the app database lazily, after this has run.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from ..errors import MigrationFailed
from ..logtail import tail

MIGRATE_LOG = "migrate.log"


def migration_failed(cmd: tuple[str, ...], why: str, output: str, log: str = "") -> MigrationFailed:
    """The error for a failed migration: the command, why, its last lines, a hint."""
    where = f" (full log: {log})" if log else ""
    return MigrationFailed(
        f"the migration command {why} (command: {shlex.join(cmd)}).\n"
        f"Last output{where}:\n{output}\n"
        "Hint: run it yourself with DATABASE_URL set to a scratch database to see why; fix "
        "--sandbox-migrate-cmd (ini livesandbox_migrate_cmd)."
    )


def run_local(
    cmd: tuple[str, ...], *, cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> float:
    """Run ``cmd`` in ``cwd`` with ``env``; output appended to ``log``; return the seconds taken.

    Raises :class:`MigrationFailed` on a non-zero exit, a missing program or the timeout.
    """
    began = time.monotonic()
    with open(log, "ab") as out:
        try:
            process = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            why = f"could not start: {cmd[0]}: not found (looked on PATH and in {cwd})"
            raise migration_failed(cmd, why, "", str(log)) from None
        except OSError as exc:
            raise migration_failed(cmd, f"could not start: {exc.strerror}", "", str(log)) from None
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            why = f"did not finish in {timeout:g}s (--sandbox-startup-timeout)"
            raise migration_failed(cmd, why, tail(log), str(log)) from None
        except BaseException:
            process.kill()
            process.wait()
            raise
    if code != 0:
        raise migration_failed(cmd, f"exited with code {code}", tail(log), str(log))
    return time.monotonic() - began

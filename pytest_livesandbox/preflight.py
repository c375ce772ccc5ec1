"""Checks at ``pytest_configure``: bad paths and settings a backend cannot use stop the run.

Before anything is provisioned, so a typo costs a second, not a sandbox (and never a stray
file): every problem found becomes one line of one :class:`~pytest_livesandbox.errors.ConfigError`
that names the option and the fix::

    problems = preflight(cfg)       # [] when all is well
    if problems:
        raise ConfigError("; ".join(problems))

The backend is asked about its own settings (``Backend.check_config``); nothing here knows
which backend is which.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .config import OPTIONS_BY_NAME, SandboxConfig
from .errors import SandboxError
from .sandbox import backend_for


def folder_problem(path: Path, what: str) -> str:
    """Why ``path`` cannot be (made into) a writable folder, or ``""``.

    The nearest folder that exists must take a new file: tried for real (a file made and
    removed at once), since permission bits say nothing to root, which still cannot write
    under ``/proc`` or a read-only mount.

    >>> folder_problem(Path("/dev/null"), "LIVESANDBOX_STATE_DIR")
    'LIVESANDBOX_STATE_DIR: /dev/null is a file, not a folder; point it at a folder'
    """
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{what}: {parent} is a file, not a folder; point it at a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{what}: {parent} is not writable by this user; point it elsewhere"
            return _creatable(parent, what)
    return ""


def _creatable(folder: Path, what: str) -> str:
    try:
        fd, name = tempfile.mkstemp(prefix=".livesandbox-check-", dir=folder)
    except OSError as exc:
        # /proc says "No such file or directory" to a new file: that reads as a typo here.
        missing = exc.errno == errno.ENOENT or not exc.strerror
        reason = "it takes no new files" if missing else exc.strerror
        return f"{what}: cannot create files in {folder} ({reason}); point it elsewhere"
    os.close(fd)
    os.unlink(name)
    return ""


def file_problem(path: Path, option: str) -> str:
    """Why a report file cannot be written at ``path``, or ``""``.

    Missing folders on the way are fine: the report makes them when it starts (as pytest's
    ``--junitxml`` does), so they must be creatable.

    >>> file_problem(Path("/"), "--sandbox-html")
    '--sandbox-html: / is a folder; give a file name, e.g. /report.html'
    """
    if path.is_dir():
        return f"{option}: {path} is a folder; give a file name, e.g. {path / 'report.html'}"
    problem = folder_problem(path.parent, option)
    if problem:
        return problem
    if path.exists() and not os.access(path, os.W_OK):
        return f"{option}: {path} is not writable by this user"
    return ""


LOCATION_VARS = ("LIVESANDBOX_STATE_DIR", "LIVESANDBOX_CACHE_DIR")


def absolute_locations() -> None:
    """Make relative ``LIVESANDBOX_STATE_DIR``/``_CACHE_DIR`` absolute in ``os.environ``.

    The app, the supervisor and xdist workers inherit the variable but may run elsewhere; a
    relative folder would mean a different place to each of them.
    """
    for env in LOCATION_VARS:
        value = os.environ.get(env)
        if value and not os.path.isabs(value):
            os.environ[env] = str(Path(value).expanduser().absolute())


def deployer_problem(config: SandboxConfig, deployers: tuple[str, ...]) -> str:
    """Why the backend cannot deploy with ``--sandbox-deployer``, or ``""``.

    >>> from dataclasses import replace
    >>> deployer_problem(replace(SandboxConfig(), deployer="argocd"), ("apply",))[:35]
    '--sandbox-deployer=argocd: backend '
    """
    if config.deployer in deployers:
        return ""
    return (
        f"--sandbox-deployer={config.deployer}: backend {config.backend!r} deploys with "
        f"{', '.join(deployers)} only; use --sandbox-deployer={deployers[0]} or a backend that "
        "supports it"
    )


def preflight(config: SandboxConfig) -> list[str]:
    """Everything wrong with ``config`` that can be known without making anything."""
    problems = []
    for env in LOCATION_VARS:
        value = os.environ.get(env)
        if value:
            problems.append(folder_problem(Path(value).absolute(), env))
    for name in ("report", "html"):
        path = getattr(config, name)
        if path is not None:
            problems.append(file_problem(path, OPTIONS_BY_NAME[name].cli_flag))
    if config.app_cwd and not config.app_cwd.is_dir():
        problems.append(
            f"{OPTIONS_BY_NAME['app_cwd'].cli_flag}: {config.app_cwd} is not a folder; fix it "
            "(relative paths are relative to the ini file's folder)"
        )
    try:
        backend = backend_for(config)
        problems.extend(backend.check_config(config))
    except SandboxError as exc:  # the backend's dependencies are missing: say which
        problems.append(str(exc))
    else:
        problems.append(deployer_problem(config, getattr(backend, "deployers", ("apply",))))
    return [problem for problem in problems if problem]

"""The Python interpreters our CI tests against: the system's ``python3`` and one per minor.

Standard library only, so any interpreter can run it; one list for the scripts and the tests::

    python3 scripts/pythons.py            # "label path" per interpreter found, one a line
    python3 scripts/pythons.py --check    # also exit 1 if an expected one is missing (CI=true)

Expected: Debian's ``/usr/bin/python3`` (what CI images and ``apt install python3`` give,
3.11.2 on Debian 12) and the newest 3.11, 3.12 and 3.13 found under ``$PYENV_ROOT/versions``
(default ``~/.pyenv``) or as ``python3.X`` on ``PATH``. Interpreters older than our
``requires-python`` are ignored. With ``CI=true`` a missing one is an error (a green run must
have tried them all); elsewhere it is reported and left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
MINORS = ("3.11", "3.12", "3.13")


@dataclass(frozen=True)
class Interpreter:
    """One interpreter: ``label`` is ``system`` or a minor version such as ``3.12``."""

    label: str
    path: str
    version: str


def _version(path: str) -> str:
    try:
        out = subprocess.run(
            [path, "-I", "-S", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _pyenv_versions() -> list[Path]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    return sorted(root.glob("3.*")) if root.is_dir() else []


def _newest(minor: str) -> str:
    """The newest CPython of ``minor`` from pyenv, else ``python3.X`` on PATH ("" if none)."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for folder in _pyenv_versions():
        match = re.fullmatch(rf"{re.escape(minor)}\.(\d+)", folder.name)
        exe = folder / "bin" / "python3"
        if match and exe.exists():
            found.append(((int(match.group(1)),), exe))
    if found:
        return str(max(found)[1])
    return shutil.which(f"python{minor}") or ""


def expected() -> list[tuple[str, str]]:
    """``(label, path or "")`` for every interpreter we expect on a CI machine."""
    system = SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else ""
    return [("system", system)] + [(minor, _newest(minor)) for minor in MINORS]


def interpreters() -> tuple[list[Interpreter], list[str]]:
    """The interpreters found (with their versions) and the labels of the missing ones."""
    found: list[Interpreter] = []
    missing: list[str] = []
    for label, path in expected():
        version = _version(path) if path else ""
        if not version:
            missing.append(label)
            continue
        if tuple(int(x) for x in version.split(".")[:2]) < (3, 11):
            continue  # below requires-python: not ours to test
        found.append(Interpreter(label, path, version))
    return found, missing


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where nothing expected may be missing."""
    return os.environ.get("CI", "").lower() == "true"


def main(argv: list[str]) -> int:
    """Print the interpreters; with ``--check``, fail under CI when one is missing."""
    found, missing = interpreters()
    for each in found:
        print(f"{each.label} {each.path} {each.version}")
    for label in missing:
        what = SYSTEM_PYTHON if label == "system" else f"CPython {label} (pyenv or PATH)"
        print(f"missing: {what}", file=sys.stderr)
    if "--check" in argv and missing and in_ci():
        print("CI=true: every expected interpreter must be there", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

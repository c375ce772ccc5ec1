"""GitLab CI (and any JUnit reader): failure artifacts as paths relative to the project.

GitLab links a JUnit test case to a job artifact only by a path relative to the project folder
(``$CI_PROJECT_DIR``), so each failed test's artifact gets a JUnit property with such a path::

    <property name="livesandbox_artifact" value="out/r.jsonl.artifacts/test_x-1f2e3d/app.log"/>

and, under GitLab CI (``GITLAB_CI=true``), a ``[[ATTACHMENT|path]]`` line in the test's captured
output, which GitLab shows as the test's attachment when pytest writes captured output into
the JUnit file (ini ``junit_logging = system-out``). Setup: ``docs/ci.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

PROPERTY = "livesandbox_artifact"
SECTION = "Captured stdout livesandbox artifacts"


def project_dir(env: Mapping[str, str]) -> Path:
    """The folder artifact paths are made relative to.

    ``$CI_PROJECT_DIR``, else ``$GITHUB_WORKSPACE``, else the current folder (where CI starts
    pytest).
    """
    return Path(env.get("CI_PROJECT_DIR") or env.get("GITHUB_WORKSPACE") or os.getcwd())


def relative(path: str, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX separators); unchanged when outside it.

    >>> relative("/builds/app/out/a.log", Path("/builds/app"))
    'out/a.log'
    """
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return path


def junit_properties(files: Sequence[str], env: Mapping[str, str]) -> list[tuple[str, str]]:
    """One ``livesandbox_artifact`` property per file, relative to the project."""
    base = project_dir(env)
    return [(PROPERTY, relative(path, base)) for path in files]


def attachment_section(files: Sequence[str], env: Mapping[str, str]) -> tuple[str, str] | None:
    """Under GitLab CI, the captured-output section with ``[[ATTACHMENT|path]]`` lines."""
    if env.get("GITLAB_CI", "").lower() != "true" or not files:
        return None
    base = project_dir(env)
    # GitLab shows the first attachment of a test case: the app's log when there is one.
    ordered = sorted(files, key=lambda p: not p.endswith("app.log"))
    return SECTION, "".join(f"[[ATTACHMENT|{relative(p, base)}]]\n" for p in ordered)

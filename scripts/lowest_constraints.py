"""Pin every dependency of pyproject.toml to the lowest version it declares (pip constraints).

    python3 scripts/lowest_constraints.py > lowest.txt
    pip install -c lowest.txt 'dist/pytest_livesandbox-*.whl[kube,docker,xdist]'

Reads ``[project] dependencies`` and the ``kube``, ``docker`` and ``xdist`` extras (not ``dev``:
linters are not what users install next to us) and turns each ``name>=X`` into ``name==X``.
A dependency without a lower bound is an error: every one we support must say where its
range starts, and CI proves that start works (scripts/test-matrix).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EXTRAS = ("kube", "docker", "xdist")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def lowest(requirement: str) -> str:
    """``"psycopg[binary]>=3.1; python_version < '4'"`` -> ``"psycopg==3.1; python_version < '4'"``.

    >>> lowest("httpx>=0.27")
    'httpx==0.27'
    """
    match = _REQUIREMENT.match(requirement)
    bound = re.search(r">=\s*([0-9][^,\s]*)", match.group(3)) if match else None
    if match is None or bound is None:
        raise ValueError(f"{requirement!r} has no lower bound (name>=X)")
    return f"{match.group(1)}=={bound.group(1)}" + (match.group(4) or "")


def constraints(pyproject: Path) -> list[str]:
    """The constraint lines for ``pyproject``'s runtime dependencies and user-facing extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return [lowest(r) for r in requirements]


if __name__ == "__main__":
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "pyproject.toml"
    )
    print("\n".join(constraints(path)))

"""Packaging facts CI relies on: one version, a lower bound for every dependency we support."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

import pytest_livesandbox

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        f"livesandbox_{name}", REPO / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_version_lives_in_one_place() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "pytest_livesandbox.__version__"
    assert pytest_livesandbox.__version__.count(".") == 2


def test_every_supported_dependency_has_a_lowest_version_ci_installs() -> None:
    pins = _script("lowest_constraints").constraints(REPO / "pyproject.toml")
    names = {line.split("==")[0].lower() for line in pins}
    assert names >= {
        "pytest",
        "pytest-xdist",
        "kubernetes",
        "psycopg",
        "psycopg-pool",
        "httpx",
        "testcontainers",
        "filelock",
    }
    assert all("==" in line for line in pins)


def test_a_requirement_without_lower_bound_is_refused() -> None:
    lowest = _script("lowest_constraints").lowest
    assert lowest("psycopg[binary]>=3.1.4") == "psycopg==3.1.4"
    assert lowest("x>=1; sys_platform == 'linux'") == "x==1; sys_platform == 'linux'"
    with pytest.raises(ValueError, match="no lower bound"):
        lowest("requests")

"""The docs cannot drift from the code: references are generated or checked here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from pytest_livesandbox import plugin
from pytest_livesandbox.config_doc import render
from tests.conftest import REPO

DOCS = REPO / "docs"


def test_configuration_page_is_generated_from_the_option_table() -> None:
    assert (DOCS / "configuration.md").read_text() == render(), (
        "regenerate: python -m pytest_livesandbox.config_doc > docs/configuration.md"
    )


def test_every_public_fixture_is_documented() -> None:
    text = (DOCS / "fixtures.md").read_text()
    public = [name for name in plugin.__all__ if not name.startswith("_")]
    assert public
    missing = [name for name in public if f"## `{name}`" not in text]
    assert missing == [], f"undocumented fixtures in docs/fixtures.md: {missing}"


def registered_markers(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--markers", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    return set(re.findall(r"^@pytest\.mark\.(\w+)", out, re.M))


def test_every_plugin_marker_is_documented() -> None:
    names = registered_markers() - registered_markers("-p", "no:livesandbox")
    assert "db_isolation" in names
    docs = "".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = sorted(name for name in names if not re.search(rf"^##+ `{name}`", docs, re.M))
    assert missing == [], f"markers without a '## `name`' section in docs/: {missing}"


def test_docs_build_in_strict_mode(tmp_path) -> None:
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("pip install mkdocs (part of the dev extra) to build the docs")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_error_class_is_in_troubleshooting() -> None:
    import pytest_livesandbox.errors as errors

    text = (DOCS / "troubleshooting.md").read_text()
    classes = [
        name
        for name in dir(errors)
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.SandboxError)
    ]
    missing = [name for name in classes if f"## `{name}`" not in text]
    assert missing == [], f"error classes without a section in docs/troubleshooting.md: {missing}"

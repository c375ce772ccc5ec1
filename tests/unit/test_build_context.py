"""Content tags of build contexts (pure: files on disk, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_livesandbox.errors import BuildFailed
from pytest_livesandbox.images.context import (
    BuildSpec,
    check_spec,
    content_tag,
    context_files,
    specs_from,
)
from pytest_livesandbox.images.registry import is_loopback
from pytest_livesandbox.values import parse_build_args, parse_build_specs


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print('a')\n")
    (tmp_path / "notes.md").write_text("ignored\n")
    (tmp_path / ".dockerignore").write_text("# comment\n*.md\n")
    return tmp_path


def test_same_tree_same_tag_and_sent_files_only(context: Path) -> None:
    spec = BuildSpec("app", context)
    assert content_tag(spec) == content_tag(BuildSpec("app", context))
    assert content_tag(spec).startswith("ls-") and len(content_tag(spec)) == 23
    assert "notes.md" not in context_files(spec)
    before = content_tag(spec)
    (context / "notes.md").write_text("changed, but ignored\n")
    assert content_tag(spec) == before


def test_a_changed_file_mode_dockerfile_or_arg_is_a_new_tag(context: Path) -> None:
    spec = BuildSpec("app", context)
    seen = {content_tag(spec)}
    (context / "app.py").write_text("print('b')\n")
    seen.add(content_tag(spec))
    (context / "app.py").chmod(0o755)
    seen.add(content_tag(spec))
    (context / "Dockerfile").write_text("FROM base\nCOPY app.py /srv/\n")
    seen.add(content_tag(spec))
    seen.add(content_tag(BuildSpec("app", context, args=(("BASE", "x"),))))
    assert len(seen) == 5


def test_missing_context_or_dockerfile_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="is not a folder"):
        check_spec(BuildSpec("app", tmp_path / "nope"))
    with pytest.raises(BuildFailed, match=r"no Dockerfile at .*Dockerfile.prod"):
        check_spec(BuildSpec("app", tmp_path, "Dockerfile.prod"))


def test_parsers_and_args_per_component() -> None:
    assert parse_build_specs(["app=.:d/Dockerfile"]) == (("app", ".", "d/Dockerfile"),)
    assert parse_build_args(["A=1", "app:B=x=y"]) == (("", "A", "1"), ("app", "B", "x=y"))
    specs = specs_from(
        [("app", Path("."), "Dockerfile"), ("db", Path("."), "Dockerfile")],
        [("", "A", "1"), ("app", "B", "2")],
    )
    assert [s.args for s in specs] == [(("A", "1"), ("B", "2")), (("A", "1"),)]
    for bad in (["app"], ["App=."], ["app="]):
        with pytest.raises(ValueError, match="COMPONENT=PATH"):
            parse_build_specs(bad)


def test_loopback_registries_use_plain_http() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000")
    assert not is_loopback("europe-docker.pkg.dev")


def test_bring_up_stages_overlapped_or_sequential() -> None:
    from pytest_livesandbox.report.stages import bringup_svg, stages
    from pytest_livesandbox.report.terminal import stage_line

    kube = {"build_s": 3.0, "push_s": 0.5, "namespace_s": 0.4, "db_ready_s": 5.0,
            "images_ready_s": 5.1, "app_ready_s": 7.0, "ready_s": 7.2}  # fmt: skip
    assert stages(kube) == [
        ("build", 0.0, 3.0),
        ("push", 3.0, 3.5),
        ("namespace", 0.0, 0.4),
        ("db", 0.4, 5.0),
        ("app", 5.1, 7.0),
    ]
    docker = {"build_s": 2.0, "push_s": 0.0, "db_ready_s": 1.0, "app_ready_s": 2.5}
    assert stages(docker) == [("build", 0.0, 2.0), ("db", 2.0, 3.0), ("app", 3.0, 4.5)]
    assert stages({"db_ready_s": 1.0}) == [("db", 0.0, 1.0)]
    # kube with the app's pods made before PostgreSQL is ready: the lanes overlap
    overlapped = {**kube, "images_ready_s": 3.6, "app_created_s": 3.7}
    assert stages(overlapped)[-2:] == [("db", 0.4, 5.0), ("app", 3.7, 7.0)]
    assert "<title>push: 3.00s - 3.50s</title>" in bringup_svg(kube)
    assert bringup_svg({}) == ""
    assert stage_line(kube).startswith("stages: build 3.00s, push 0.50s; ready at: namespace")
    assert stage_line({"db_ready_s": 1.0}) == ""


def test_an_early_build_starts_only_for_a_pushing_backend_and_leaves_errors_to_it(
    context: Path,
) -> None:
    from pytest_livesandbox.config import SandboxConfig
    from pytest_livesandbox.images.early import start_early, take_early

    def config(**cli: object) -> SandboxConfig:
        return SandboxConfig.from_sources(
            cli={"build": [f"app={context}"], **cli}, env={}, ini={}, rootdir=context
        )

    docker = config(backend="docker")
    start_early(docker)
    assert take_early(docker) is None  # builds in its own engine, at provisioning
    # Nothing listens on port 9 of loopback: the check fails, so nothing starts now; the
    # backend's own BackgroundBuild raises the RegistryError at provisioning, in words.
    refused = config(backend="kube", registry="127.0.0.1:9/x")
    start_early(refused)
    assert take_early(refused) is None

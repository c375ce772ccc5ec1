from __future__ import annotations

from pathlib import Path

import pytest

from pytest_livesandbox.config import (
    SandboxConfig,
    parse_bool,
    parse_duration,
    parse_env_pairs,
    split_command,
)
from pytest_livesandbox.errors import ConfigError

ROOT = Path("/project")


def resolve(cli=None, env=None, ini=None) -> SandboxConfig:
    return SandboxConfig.from_sources(cli=cli or {}, env=env or {}, ini=ini or {}, rootdir=ROOT)


def test_defaults_leave_the_plugin_inert() -> None:
    cfg = resolve()
    assert cfg.backend == "none" and not cfg.enabled
    assert cfg.startup_timeout == 30.0 and cfg.health_path == "/healthz" and cfg.keep is False
    assert cfg.app_cwd == ROOT


def test_cli_beats_env_beats_ini() -> None:
    ini = {"backend": "kube", "startup_timeout": "10s"}
    env = {"LIVESANDBOX_BACKEND": "gke", "LIVESANDBOX_STARTUP_TIMEOUT": "20s"}
    assert resolve(ini=ini).backend == "kube"
    assert resolve(env=env, ini=ini).backend == "gke"
    cfg = resolve(cli={"backend": "local"}, env=env, ini=ini)
    assert cfg.backend == "local" and cfg.startup_timeout == 20.0
    assert cfg.sources["backend"] == "--sandbox"
    assert cfg.sources["startup_timeout"] == "LIVESANDBOX_STARTUP_TIMEOUT"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("1.5s", 1.5), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_one_duration_parser_for_options_and_markers() -> None:
    from pytest_livesandbox.chaos.markers import parse_chaos_duration

    # A bare number is seconds everywhere (as in pytest-timeout), text or number.
    for value in ("30", 30, 30.0, "30s", "0.5m"):
        assert parse_duration(value) == parse_chaos_duration(value, "delay") == 30.0
    assert parse_chaos_duration("0s", "delay") == 0.0  # markers may say "at once"


@pytest.mark.parametrize(
    "text", ["", "abc", "-3", "0", "3 days", "10x", "nan", "inf", "8d", "200h", float("nan")]
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_value_names_option_source_and_fix() -> None:
    with pytest.raises(ConfigError) as exc:
        resolve(env={"LIVESANDBOX_STARTUP_TIMEOUT": "soon"})
    text = str(exc.value)
    assert "--sandbox-startup-timeout" in text and "LIVESANDBOX_STARTUP_TIMEOUT" in text
    assert "30s" in text


def test_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="none, docker, gke, kube, local"):
        resolve(cli={"backend": "bogus"})


def test_health_path_must_be_a_path() -> None:
    with pytest.raises(ConfigError, match="must be a path starting with '/'"):
        resolve(ini={"health_path": "healthz"})


def test_bools_lists_paths_and_commands() -> None:
    cfg = resolve(
        env={"LIVESANDBOX_KEEP": "yes"},
        ini={"app_env": ["A=1", "B=x=y"], "report": "out/r.jsonl", "app_cmd": "{python} app.py"},
    )
    assert cfg.keep is True
    assert cfg.app_env == (("A", "1"), ("B", "x=y"))
    assert cfg.report == ROOT / "out/r.jsonl"
    assert cfg.app_cmd is not None and cfg.app_cmd[1] == "app.py"
    assert parse_bool("off") is False
    with pytest.raises(ValueError):
        parse_bool("maybe")
    with pytest.raises(ValueError):
        parse_env_pairs(["1BAD=x"])
    with pytest.raises(ValueError):
        split_command("'unterminated")


def test_ci_annotations_default_on_and_off_from_env_or_ini() -> None:
    from pytest_livesandbox.config import SandboxConfig

    def resolve(env: dict[str, str], ini: dict[str, str]) -> bool:
        cfg = SandboxConfig.from_sources(cli={}, env=env, ini=ini, rootdir=Path("."))
        return cfg.ci_annotations

    assert resolve({}, {}) is True
    assert resolve({"LIVESANDBOX_CI_ANNOTATIONS": "false"}, {}) is False
    assert resolve({}, {"ci_annotations": "false"}) is False

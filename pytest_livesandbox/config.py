"""Configuration: one table of options, resolved once into a frozen :class:`SandboxConfig`.

Every setting exists as a command-line option, a ``LIVESANDBOX_*`` environment variable and an ini
key; the command line wins over the environment, which wins over the ini file::

    pytest --sandbox=local --sandbox-startup-timeout=45s
    LIVESANDBOX_STARTUP_TIMEOUT=45s pytest --sandbox=local
    # pytest.ini / [tool.pytest.ini_options]
    livesandbox_backend = local
    livesandbox_startup_timeout = 45s

A bad value raises :class:`~pytest_livesandbox.errors.ConfigError` naming the option, where the
value came from and what would be valid; the plugin turns it into a ``pytest.UsageError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .options import (
    BACKEND_GROUP,
    ENVIRONMENT,
    NO_BACKEND,
    OPTIONS,
    OPTIONS_BY_NAME,
    OptionSpec,
    backend_names,
    in_ci,
)
from .values import (
    parse_bool,
    parse_build_args,
    parse_build_specs,
    parse_duration,
    parse_env_pairs,
    parse_image_overrides,
    split_command,
)

__all__ = [
    "BACKEND_GROUP",
    "ENVIRONMENT",
    "NO_BACKEND",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "OptionSpec",
    "SandboxConfig",
    "backend_names",
    "in_ci",
    "parse_bool",
    "parse_duration",
    "parse_env_pairs",
    "parse_image_overrides",
    "split_command",
]

RawValue = str | bool | list[str] | None


@dataclass(frozen=True)
class SandboxConfig:
    """Every setting of one pytest run, resolved and validated.

    Build it with :meth:`from_sources`; the plugin does so once in ``pytest_configure``::

        cfg = SandboxConfig.from_sources(
            cli={"backend": "local"}, env={}, ini={}, rootdir=Path(".")
        )
        assert cfg.enabled and cfg.startup_timeout == 30.0
    """

    backend: str = NO_BACKEND
    app_cmd: tuple[str, ...] | None = None
    app_cwd: Path = field(default_factory=Path.cwd)
    app_env: tuple[tuple[str, str], ...] = ()
    health_path: str = "/healthz"
    startup_timeout: float = 30.0
    keep: bool = False
    report: Path | None = None
    pg_bin: Path | None = None
    image: tuple[tuple[str, str], ...] = ()
    db_dsn: str | None = None
    attach: str | None = None
    context: str | None = None
    kubeconfig: Path | None = None
    manifests: Path | None = None
    namespace_prefix: str = "sandbox"
    deployer: str = "apply"
    argocd_namespace: str = "argocd"
    argocd_project: str = "default"
    git_repo: str | None = None
    git_revision: str = "HEAD"
    git_path: str = "."
    ttl: float = 7200.0
    allow_context: str | None = None
    gke_cluster: str | None = None
    url_template: str | None = None
    route: str = "none"
    report_url: str | None = None
    html: Path | None = None
    fault_proxy: bool = True
    chaos_verify_timeout: float = 30.0
    ci_annotations: bool = True
    fake_clock: str = "off"
    build: tuple[tuple[str, Path, str], ...] = ()
    build_arg: tuple[tuple[str, str, str], ...] = ()
    registry: str | None = None
    lease: float = 20.0
    reuse: bool = False
    reuse_idle: float = 1800.0
    reuse_pool: int = 0
    migrate_cmd: tuple[str, ...] | None = None
    db_reset: str = "none"
    db_reset_keep: tuple[str, ...] = (
        "alembic_version",
        "django_migrations",
        "schema_migrations",
        "flyway_schema_history",
    )
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        """True unless the backend is ``none``."""
        return self.backend != NO_BACKEND

    @classmethod
    def from_sources(
        cls,
        *,
        cli: Mapping[str, RawValue],
        env: Mapping[str, str],
        ini: Mapping[str, RawValue],
        rootdir: Path,
    ) -> SandboxConfig:
        """Resolve each option from the command line, then the environment, then the ini file.

        ``cli`` and ``ini`` are keyed by option name (``"startup_timeout"``); ``env`` is the
        process environment. Relative paths are taken relative to ``rootdir``.
        """
        values: dict[str, object] = {}
        sources: dict[str, str] = {}
        for spec in OPTIONS:
            raw, where = _pick(spec, cli, env, ini)
            if raw is None:
                raw, where = spec.default, "default"
            sources[spec.name] = where
            if raw is None:
                continue
            try:
                values[spec.name] = _convert(spec, raw, rootdir)
            except ValueError as exc:
                raise ConfigError(f"{spec.cli_flag} (from {where}): {exc}") from None
        values.setdefault("app_cwd", rootdir)
        health = str(values.get("health_path", "/healthz"))
        if not health.startswith("/"):
            raise ConfigError(
                f"{OPTIONS_BY_NAME['health_path'].cli_flag} (from {sources['health_path']}): "
                f"{health!r} must be a path starting with '/', e.g. /healthz"
            )
        built = {component for component, _, _ in values.get("build", ())}  # type: ignore[attr-defined]
        both = sorted(built & {component for component, _ in values.get("image", ())})  # type: ignore[attr-defined]
        if both:
            raise ConfigError(
                f"--sandbox-build and --sandbox-image both name {', '.join(both)}: a component "
                "either runs an image you give or one built from source; drop one of them"
            )
        unknown = sorted(
            {c for c, _, _ in values.get("build_arg", ()) if c and c not in built}  # type: ignore[attr-defined]
        )
        if unknown:
            raise ConfigError(
                f"--sandbox-build-arg {unknown[0]}:...: no --sandbox-build for {unknown[0]}; "
                "name a built component or drop the COMPONENT: prefix"
            )
        return cls(**values, sources=sources)  # type: ignore[arg-type]


def _pick(
    spec: OptionSpec,
    cli: Mapping[str, RawValue],
    env: Mapping[str, str],
    ini: Mapping[str, RawValue],
) -> tuple[RawValue, str]:
    value = cli.get(spec.name)
    if value is not None and value != []:
        return value, spec.cli_flag
    if spec.env_var in env:
        return env[spec.env_var], spec.env_var
    value = ini.get(spec.name)
    if value is not None and value != [] and value != "":
        return value, f"ini {spec.ini_key}"
    return None, ""


def _convert(spec: OptionSpec, raw: str | bool | list[str], rootdir: Path) -> object:
    if spec.kind == "bool":
        return raw if isinstance(raw, bool) else parse_bool(str(raw))
    if spec.kind == "list":
        items = raw if isinstance(raw, list) else [ln for ln in str(raw).splitlines() if ln.strip()]
        if spec.name == "app_env":
            return parse_env_pairs([item.strip() for item in items])
        if spec.name == "image":
            return parse_image_overrides([item.strip() for item in items])
        if spec.name == "build":
            return tuple(
                (component, _path(path, rootdir), dockerfile)
                for component, path, dockerfile in parse_build_specs([i.strip() for i in items])
            )
        if spec.name == "build_arg":
            return parse_build_args([item.strip() for item in items])
        return tuple(item.strip() for item in items)
    text = str(raw).strip()
    if spec.kind == "backend":
        names = (NO_BACKEND, *backend_names())
        if text not in names:
            raise ValueError(f"{text!r} is not one of {', '.join(names)}")
        return text
    if spec.kind == "choice":
        if text not in spec.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(spec.choices)}")
        return text
    if spec.kind == "duration":
        return parse_duration(text)
    if spec.kind == "int":
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a whole number")
        return int(text)
    if spec.kind == "path":
        return _path(text, rootdir)
    if spec.name == "registry":
        registry = text.rstrip("/")
        if not registry or "://" in registry or any(c.isspace() for c in registry):
            raise ValueError(
                f"{text!r} is not a registry: use HOST[:PORT][/PATH] without a scheme, e.g. "
                "europe-docker.pkg.dev/PROJECT/REPO"
            )
        return registry
    if spec.name in ("app_cmd", "migrate_cmd"):
        return split_command(text)
    return text


def _path(text: str, rootdir: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else rootdir / path

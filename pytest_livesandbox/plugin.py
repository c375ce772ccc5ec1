"""pytest hooks of pytest-livesandbox (registered through the ``pytest11`` entry point).

Hooks only: options and ini keys, configuration, marker checks at collection, the xdist handover,
reporting and teardown. The work lives in :mod:`.config`, :mod:`.parallel`, :mod:`.fixtures`,
the backends and :mod:`.report`.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from .chaos import plugin as chaos_plugin
from .chaos.markers import MARKER_HELP as CHAOS_MARKERS
from .config import OPTIONS, SandboxConfig
from .errors import ConfigError, SandboxError
from .fixtures import (
    JANITOR_KEY,
    MANAGER_KEY,
    RESET_KEY,
    _livesandbox_cloner,
    _livesandbox_db_reset,
    _livesandbox_role_admin,
    _livesandbox_transport,
    db_role_audit,
    live_async_http,
    live_db,
    live_db_factory,
    live_db_role,
    live_dsn,
    live_http,
    live_url,
    livesandbox,
)
from .health import HealthHooks
from .images.early import start_early
from .parallel import WORKERINPUT_KEY, SandboxManager, is_xdist_worker
from .pool import sandbox_args, spawn_top_up
from .preflight import absolute_locations, preflight
from .report.artifacts import artifact_root, prepare_root
from .report.events import EventSink, RunEvents
from .report.github import github_sink
from .report.hooks import ArtifactHooks, ReportHooks
from .report.html import HtmlSink
from .report.jsonl import JsonlSink
from .report.terminal import report_lines, summary_lines
from .report.webhook import WebhookSink
from .sandbox import backend_for

CONFIG_KEY = pytest.StashKey[SandboxConfig]()
EVENTS_KEY = pytest.StashKey[RunEvents]()
TIMES_KEY = pytest.StashKey[dict[str, float]]()
_MARKERS_OK = pytest.StashKey[bool]()
_COLLECTED_KEY = pytest.StashKey[bool]()
_SESSION_KEY = pytest.StashKey[pytest.Session]()
_SIGTERM_KEY = pytest.StashKey[Callable[..., Any] | int | None]()

__all__ = [
    "_livesandbox_cloner",
    "_livesandbox_db_reset",
    "_livesandbox_role_admin",
    "_livesandbox_transport",
    "db_role_audit",
    "live_async_http",
    "live_db",
    "live_db_factory",
    "live_db_role",
    "live_dsn",
    "live_http",
    "live_url",
    "livesandbox",
]

MARKERS = (
    "db_isolation(mode): 'transaction' (default: rolled back after the test) or 'database' "
    "(a fresh database cloned from the app schema, commits allowed)",
    "db_reset: after this test, empty every app table except the migration bookkeeping "
    "(TRUNCATE ... RESTART IDENTITY); the test runs alone under xdist",
    *CHAOS_MARKERS,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every setting as ``--sandbox-*`` option and ``livesandbox_*`` ini key."""
    group = parser.getgroup("livesandbox", "live sandbox (pytest-livesandbox)")
    for spec in OPTIONS:
        where = f" [ini: {spec.ini_key}; env: {spec.env_var}; default: {spec.default}]"
        if spec.kind == "bool":
            _add_bool_option(group, spec)
        elif spec.kind == "list":
            group.addoption(
                spec.cli_flag, action="append", default=None, dest=spec.dest, help=spec.help + where
            )
        else:
            group.addoption(spec.cli_flag, default=None, dest=spec.dest, help=spec.help + where)
        if spec.kind == "list":
            parser.addini(spec.ini_key, spec.help, type="linelist")
        else:
            parser.addini(spec.ini_key, spec.help, type="string")


def _add_bool_option(group: Any, spec: Any) -> None:
    # --sandbox-keep, --sandbox-keep=false and --no-sandbox-keep all work. A value is never
    # taken from the next argument (`--sandbox-keep tests/` keeps tests/ a path): argparse
    # matches whole option strings first, so each spelled-out value is an option of its own.
    group.addoption(
        spec.cli_flag,
        action="store_const",
        const="true",
        default=None,
        dest=spec.dest,
        help=f"{spec.help} Also {spec.cli_flag}=false, --no-{spec.cli_flag[2:]}.",
    )
    group.addoption(
        "--no-" + spec.cli_flag[2:],
        action="store_const",
        const="false",
        dest=spec.dest,
        help=f"Same as {spec.cli_flag}=false.",
    )
    for word in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        group.addoption(
            f"{spec.cli_flag}={word}",
            action="store_const",
            const=word,
            dest=spec.dest,
            help=argparse.SUPPRESS,
        )


# pytest options after which no test runs, so nothing is built early (--collect-only, --help...).
_NO_RUN_OPTIONS = ("collectonly", "help", "showfixtures", "show_fixtures_per_test", "markers")


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the configuration once; set up the sandbox manager and the reporters."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if not config.pluginmanager.has_plugin("livesandbox-chaos"):
        config.pluginmanager.register(chaos_plugin, "livesandbox-chaos")
    root = config.inipath.parent if config.inipath else config.rootpath
    try:
        cfg = SandboxConfig.from_sources(
            cli={spec.name: config.getoption(spec.dest) for spec in OPTIONS},
            env=os.environ,
            ini={spec.name: config.getini(spec.ini_key) for spec in OPTIONS},
            rootdir=root,
        )
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-livesandbox: {exc}") from None
    config.stash[CONFIG_KEY] = cfg
    if not cfg.enabled:
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        if not any(getattr(config.option, name, False) for name in _NO_RUN_OPTIONS):
            start_early(cfg)  # the engine builds while pytest imports and collects
        # Paths and what the backend cannot honour, before anything is made (not per worker).
        absolute_locations()
        problems = preflight(cfg)
        if problems:
            raise pytest.UsageError("pytest-livesandbox: " + "\n  ".join(problems))
    manager = SandboxManager(cfg, workerinput)
    config.stash[MANAGER_KEY] = manager
    config.pluginmanager.register(ArtifactHooks(manager, backend_for), "livesandbox-artifacts")
    config.pluginmanager.register(HealthHooks(manager), "livesandbox-health")
    if is_xdist_worker(config):
        return
    artifacts = artifact_root(cfg.report, cfg.html)
    if artifacts is not None and not config.option.collectonly:
        prepare_root(artifacts)
    sinks: list[EventSink] = []
    if cfg.report:
        sinks.append(JsonlSink(cfg.report))
    if cfg.report_url:
        sinks.append(WebhookSink(cfg.report_url))
    if cfg.html:
        sinks.append(HtmlSink(cfg.html))
    github = github_sink(config, cfg.ci_annotations, list(sinks))
    if github is not None:
        sinks.append(github)  # last: closed after the webhook, so it can warn about it
    events = RunEvents(sinks)
    config.stash[EVENTS_KEY] = events
    config.pluginmanager.register(ReportHooks(events), "livesandbox-report")
    config.stash[TIMES_KEY] = {"started": time.perf_counter()}  # for the whole run's wall time
    config.stash[_SIGTERM_KEY] = _sigterm_as_interrupt()


def _sigterm_as_interrupt() -> Callable[..., Any] | int | None:
    # CI runners stop jobs with SIGTERM: turn it into Ctrl-C so teardown still runs.
    if threading.current_thread() is not threading.main_thread():
        return None  # pytest driven from a thread (an IDE, execnet's thread model): no handlers
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)
    return previous


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the session: the xdist controller asks it for collection errors."""
    session.config.stash[_SESSION_KEY] = session


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Single process: provision once the collected markers were checked.

    Called also when collection failed (pytest calls it from a ``finally``): then nothing is made.
    """
    config = session.config
    if config.pluginmanager.has_plugin("dsession") or not config.stash.get(_MARKERS_OK, False):
        return
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # collection errors interrupt the run
    _provision(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Xdist controller: provision once the first worker collected, if it collected cleanly.

    A worker reports bad markers as collection errors before it reports the end of its
    collection (one channel, in order), and xdist schedules the first test only after this hook
    returns: no sandbox is made for a run with a typo, and none is missing for a test. As
    without xdist, collection errors stop the run (``--continue-on-collection-errors`` runs the
    rest against the sandbox).
    """
    config = node.config
    session = config.stash.get(_SESSION_KEY, None)
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None or session is None:
        return  # no sandbox in this run: xdist as usual
    if config.stash.get(_COLLECTED_KEY, False):
        return  # a replacement for a crashed worker: the sandbox is handed over already
    config.stash[_COLLECTED_KEY] = True
    if session.testsfailed and not config.option.continue_on_collection_errors:
        errors = session.testsfailed
        manager.not_made = "collection errors stopped the run"
        raise session.Interrupted(f"{errors} error{'s' if errors != 1 else ''} during collection")
    _provision(config)


def _provision(config: pytest.Config) -> None:
    # A failure is remembered and reported by every test that needs the sandbox.
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None or is_xdist_worker(config):
        return
    events = config.stash[EVENTS_KEY]
    if not (config.option.collectonly or getattr(config.option, "showfixtures", False)):
        try:
            if manager.role == "controller":
                manager.hand_over()  # the workers read it before their first test
            else:
                manager.get()
        except Exception:
            pass
    if manager.provisioned:
        assert manager.sandbox is not None
        info = manager.sandbox.info
        if manager.config.reuse and manager.config.reuse_pool:
            # Replace the warm sandbox this run took, in a process that outlives the run.
            args = sandbox_args(config.invocation_params.args)
            spawn_top_up(manager.config.reuse_pool, config.rootpath, args, info.id)
        events.sandbox_id = info.id
        events.secrets = info.secret_values()
        sandbox_public: dict[str, Any] | None = info.public()
        reused = bool(info.extra.get("reused"))
    else:
        sandbox_public, reused = None, False
    events.emit(
        "run_started",
        run_id=manager.run_id,
        backend=manager.config.backend,
        sandbox=sandbox_public,
        reused=reused,
        error=manager.error,
        workers=getattr(config.option, "numprocesses", None) or 0,
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Xdist controller: tell each worker where the sandbox will be handed over."""
    manager = node.config.stash.get(MANAGER_KEY, None)
    if manager is not None:
        node.workerinput[WORKERINPUT_KEY] = manager.workerinput_payload()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reject bad marker arguments before anything runs, naming the test."""
    cfg = config.stash[CONFIG_KEY]
    problems = [line for item in items for line in chaos_plugin.marker_problems(item, cfg)]
    if problems:
        raise pytest.UsageError("pytest-livesandbox: bad markers:\n  " + "\n  ".join(problems))
    config.stash[_MARKERS_OK] = True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After fixtures are torn down: remove the sandbox (once), then close the report."""
    config = session.config
    janitor = config.stash.get(JANITOR_KEY, None)
    if janitor is not None:
        janitor.close()
    reset = config.stash.get(RESET_KEY, None)
    if reset is not None:
        reset.close()
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None or is_xdist_worker(config):
        return
    began = time.perf_counter()
    try:
        manager.shutdown()
    except SandboxError as exc:
        # A sandbox left behind is a failed run; say what is left and how to remove it.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"livesandbox: {type(exc).__name__}: {exc}", red=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    teardown_s = round(time.perf_counter() - began, 4)
    config.stash[TIMES_KEY]["teardown_s"] = teardown_s
    events = config.stash[EVENTS_KEY]
    events.emit(
        "run_finished",
        counts=dict(events.counts),
        duration=round(time.time() - events.started, 4),
        teardown_s=teardown_s,
        exitstatus=int(exitstatus),
    )
    events.close()
    for sink in events.sinks:
        problem = getattr(sink, "problem", None)
        if problem:
            cfg = config.stash[CONFIG_KEY]
            problem += f"; {cfg.report} has every event" if cfg.report else ""
            # Shown once in pytest's warnings summary, attributed to the option, not our code.
            warnings.warn_explicit(
                pytest.PytestWarning(problem), None, "pytest-livesandbox", 0, module="livesandbox"
            )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """A short section: sandbox id, backend, bring-up and teardown times, endpoint, report."""
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None or is_xdist_worker(config):
        return
    terminalreporter.write_sep("-", "livesandbox")
    events = config.stash[EVENTS_KEY]
    shown = bool(events.counts.get("error"))
    cfg, times = config.stash[CONFIG_KEY], config.stash[TIMES_KEY]
    for line in summary_lines(manager, cfg, times, errors_shown=shown):
        terminalreporter.write_line(line)
    for line in report_lines(events):
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Last resort: a run that never reached sessionfinish still tears down."""
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is not None:
        manager.shutdown()
    events = config.stash.get(EVENTS_KEY, None)
    if events is not None:
        events.close()  # idempotent; writes the HTML and flushes the webhook of a cut-short run
    previous = config.stash.get(_SIGTERM_KEY, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)

"""The report's pytest hooks, registered by the main plugin (``plugin.py`` holds only hooks).

- :class:`ArtifactHooks` runs where tests run (xdist worker or single process): it notes each
  test's log window, saves a failed test's artifacts, redacts and tags its reports (JUnit, JSONL);
- :class:`ReportHooks` runs in the controller (or single process), where every worker's reports
  arrive, and feeds them to the run's events (JSONL, webhook, HTML, terminal).

The backend comes in as a factory, so the report never imports a backend::

    config.pluginmanager.register(ArtifactHooks(manager, backend_for), "livesandbox-artifacts")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from ..redaction import redact_report
from .artifacts import ArtifactRecorder, artifact_root
from .events import RunEvents
from .gitlab import attachment_section, junit_properties

if TYPE_CHECKING:
    from ..config import SandboxConfig
    from ..parallel import SandboxManager
    from ..protocol import Backend

BackendFactory = Callable[["SandboxConfig"], "Backend"]


class ArtifactHooks:
    """Registered where tests run (xdist worker or single process): log windows, properties."""

    def __init__(self, manager: SandboxManager, backend_for: BackendFactory) -> None:
        self.manager = manager
        self.backend_for = backend_for
        self.root = artifact_root(manager.config.report, manager.config.html)
        self._recorder: ArtifactRecorder | None = None
        self._failed: set[str] = set()
        self._first_error: str | None = None

    def _active(self) -> ArtifactRecorder | None:
        if self._recorder is None and self.root is not None and self.manager.provisioned:
            assert self.manager.sandbox is not None
            info = self.manager.sandbox.info
            backend = self.backend_for(self.manager.config)
            self._recorder = ArtifactRecorder(backend, info, self.root, info.secret_values())
        return self._recorder

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Note where the sandbox's logs are before the test's fixtures start."""
        recorder = self._active()
        if recorder is not None:
            recorder.start(item.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """After teardown: save a failed test's log window; tag the report for JUnit/JSONL."""
        report = yield
        if self.manager.provisioned:
            assert self.manager.sandbox is not None
            redact_report(report, self.manager.sandbox.info.secret_values())
        elif report.failed and report.when == "setup" and self.manager.role != "worker":
            self._point_at_first_error(item.nodeid, report)
        if report.failed:
            self._failed.add(item.nodeid)
        if report.when != "teardown":
            return report
        failed = item.nodeid in self._failed
        self._failed.discard(item.nodeid)
        sandbox = self.manager.sandbox if self.manager.provisioned else None
        if sandbox is not None:
            report.user_properties.append(("livesandbox_sandbox_id", sandbox.info.id))
            report.user_properties.append(("livesandbox_backend", sandbox.info.backend))
        recorder = self._active()
        if recorder is not None:
            files = recorder.finish(item.nodeid, failed)
            if files:
                report.user_properties.append(("livesandbox_artifacts", files))
                report.user_properties.extend(junit_properties(files, os.environ))
                section = attachment_section(files, os.environ)
                if section is not None:
                    report.sections.append(section)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Xdist controller: the provisioning error in full once per run, not once per worker.

        (Before the terminal, JUnit and the report sinks see the report.)
        """
        if self.manager.role == "controller" and report.failed and report.when == "setup":
            self._point_at_first_error(report.nodeid, report)

    def _point_at_first_error(self, nodeid: str, report: pytest.TestReport) -> None:
        # The provisioning error in full once; every later test gets one line pointing at it.
        error = self.manager.error
        if not error or error not in str(report.longrepr):
            return
        if self._first_error is None:
            self._first_error = nodeid
            return
        kind = error.split(":", 1)[0]
        report.longrepr = (
            f"sandbox could not be provisioned ({kind}): the error is shown in full at "
            f"{self._first_error}"
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """Xdist controller: a worker died during ``crashitem``; attach the latest logs."""
        recorder = self._active()
        if recorder is not None:
            files = recorder.recent(crashitem, since=time.time() - 300)
            if files:
                report.user_properties.append(("livesandbox_artifacts", files))


class ReportHooks:
    """Registered in the controller (or single process), where every worker's reports arrive."""

    def __init__(self, events: RunEvents) -> None:
        self.events = events

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Feed each phase report to the run's events."""
        self.events.on_report(report)

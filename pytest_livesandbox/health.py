"""Components that die mid-run are named, not left to fail later tests with the app's errors.

Registered where tests run (an xdist worker or the single process). Before each test the
backend's :class:`~pytest_livesandbox.protocol.HealthCheck` (if it has one) says whether
PostgreSQL, the fault proxy and the app still run; if not, the test errors at setup with that
reason (``PostgreSQL of sandbox 3f9c2a1b is not running. Last log lines: ...``). After each test
the app's restart count is compared with the one before it: a restart that no chaos fault caused
is put on the report (``livesandbox_app_restarts``, JSONL ``app_restarts``) and the terminal
summary says ``the app restarted 1x during test_x.py::test_y``.

The check runs after the chaos plugin's set-up repair, so a fault a dead worker left behind is
undone first; chaos tests (which stop things on purpose) are not counted.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .chaos.markers import MARKER_NAMES
from .errors import SandboxDied
from .parallel import SandboxManager
from .protocol import HealthCheck
from .sandbox import backend_for

RESTARTS_PROPERTY = "livesandbox_app_restarts"


def _is_chaos(item: pytest.Item) -> bool:
    if "chaos" in getattr(item, "fixturenames", ()):
        return True
    return any(item.get_closest_marker(name) for name in MARKER_NAMES)


class HealthHooks:
    """Per-test health check and restart count (see the module docstring)."""

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager
        self._asked = False
        self._checker: HealthCheck | None = None
        self._before: dict[str, int] = {}

    def _backend(self) -> HealthCheck | None:
        if not self._asked:
            self._asked = True
            backend = backend_for(self.manager.config)
            self._checker = backend if isinstance(backend, HealthCheck) else None
        return self._checker

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Error the test if a component of the sandbox died since the last one."""
        if not self.manager.provisioned or self.manager.sandbox is None:
            return
        checker = self._backend()
        if checker is None:
            return
        health = checker.health(self.manager.sandbox.info)
        if health.problems:
            raise SandboxDied(
                "\n".join(health.problems)
                + "\nHint: something outside the test run stopped it (OOM killer, a cleanup "
                "script, `livesandbox gc`); the rest of this run cannot use the sandbox."
            )
        if health.app_restarts is not None:
            self._before[item.nodeid] = health.app_restarts

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """After teardown: how often the app restarted while this (non-chaos) test ran."""
        report = yield
        if report.when != "teardown" or item.nodeid not in self._before:
            return report
        before = self._before.pop(item.nodeid)
        checker = self._backend()
        if checker is None or self.manager.sandbox is None or _is_chaos(item):
            return report
        after = checker.health(self.manager.sandbox.info).app_restarts
        if after is not None and after > before:
            report.user_properties.append((RESTARTS_PROPERTY, after - before))
        return report

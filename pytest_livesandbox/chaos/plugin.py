"""pytest hooks and fixtures of the chaos markers (registered by the main plugin).

Life of a chaos test:

1. collection: markers parsed into a :class:`~.markers.ChaosPlan` (stashed on the item); bad
   arguments or a backend that cannot honour them are collection errors (see
   :func:`marker_problems`, called from the main plugin's ``pytest_collection_modifyitems``);
2. ``pytest_runtest_protocol``: the test holds the sandbox lock (:mod:`.lock`), exclusively
   when it injects faults on the whole sandbox (app -> db, processes, the ``chaos`` fixture), so
   no other test sees them; a test with only client -> app markers (``latency`` /
   ``network_fault`` / ``http_fault`` with ``target="app"``) shares it: its faults are scoped to
   its own requests (:mod:`.scope`);
3. setup: any fault left behind by a dead process is undone and the baseline re-checked;
4. ``pytest_runtest_call``: ``before`` faults are applied just before the body, ``during`` ones
   on timers; all are removed right after the body;
5. teardown of the ``chaos`` fixture: removal is finished and the sandbox verified; if it is not
   back to baseline the test errors with the reason, and a marker file makes later tests repair
   or fail instead of running on a degraded sandbox; a fault that affected nothing makes the
   test error with :class:`~pytest_livesandbox.errors.ChaosNotObserved` (unless the test body
   failed already, or the fault says ``require_hit=False``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from filelock import FileLock

from ..backends import load_backend
from ..config import SandboxConfig
from ..errors import ChaosError, ChaosNotObserved, MarkerError, SandboxError
from ..fixtures import MANAGER_KEY
from ..info import SandboxInfo
from ..parallel import is_xdist_worker
from ..postgres.isolation import validate_db_isolation
from ..protocol import unsupported_fault_hint
from ..sandbox import Sandbox, backend_for
from .driver import ChaosDriver, chaos_dir, remove_chaos_dir
from .lock import SandboxLock
from .markers import MARKER_NAMES, ChaosPlan, plan_from_markers
from .scope import scope_token
from .session import Chaos

PLAN_KEY = pytest.StashKey[ChaosPlan]()
SESSION_KEY = pytest.StashKey[Chaos]()
ERRORS_KEY = pytest.StashKey[list[str]]()
EXCLUSIVE_KEY = pytest.StashKey[bool]()
DEGRADED_FILE = "chaos-degraded"


def marker_problems(item: pytest.Item, config: SandboxConfig) -> list[str]:
    """Check the item's db_isolation and chaos markers (the chaos plan goes into its stash).

    Returns ``"nodeid: problem"`` lines; empty when every marker is fine.
    """
    problems = []
    for marker in item.iter_markers("db_isolation"):
        try:
            validate_db_isolation(marker.args, marker.kwargs)
        except MarkerError as exc:
            problems.append(str(exc))
    problems.extend(_chaos_problems(item, config))
    return [f"{item.nodeid}: {problem}" for problem in problems]


def _chaos_problems(item: pytest.Item, config: SandboxConfig) -> list[str]:
    markers = [(m.name, m.args, m.kwargs) for m in item.iter_markers() if m.name in MARKER_NAMES]
    if not markers:
        return []
    try:
        plan = plan_from_markers(markers)
    except MarkerError as exc:
        return [str(exc)]
    item.stash[PLAN_KEY] = plan
    return capability_problems(plan, config)


def capability_problems(plan: ChaosPlan, config: SandboxConfig) -> list[str]:
    """Why this run's backend cannot inject ``plan``: it says so itself (collection-time check)."""
    if not plan or not config.enabled:
        return []  # the tests skip for want of a sandbox anyway
    try:
        backend = backend_for(config)
    except SandboxError as exc:
        return [f"@{plan.faults[0].marker}: {exc}"]
    problems = [
        f"@{fault.marker}: not supported on --sandbox={backend.name}: "
        + unsupported_fault_hint(backend, fault.kind)
        for fault in plan.faults
        if fault.kind not in backend.supported_faults
    ]
    return problems or backend.fault_problems(plan, config)


def _driver(info: SandboxInfo, nodeid: str) -> ChaosDriver:
    return load_backend(info.backend).chaos(info, _owner(nodeid))


def _verify_timeout(config: pytest.Config) -> float:
    manager = config.stash.get(MANAGER_KEY, None)
    return manager.config.chaos_verify_timeout if manager is not None else 30.0


def _info(config: pytest.Config) -> SandboxInfo | None:
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None or not manager.provisioned or manager.sandbox is None:
        return None
    info = manager.sandbox.info
    return info if _supports_chaos(info.backend) else None


@functools.cache
def _supports_chaos(name: str) -> bool:
    try:
        return bool(load_backend(name).supported_faults)
    except SandboxError:
        return False


def _owner(nodeid: str) -> str:
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}:{os.getpid()}:{nodeid}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """In an xdist worker, bad markers fail the module's collection with the usual message.

    The main plugin raises ``pytest.UsageError`` from ``pytest_collection_modifyitems``; in a
    worker that crashes xdist with an INTERNALERROR and no message. A failed collect report is
    relayed by xdist ("ERROR collecting ...") with the text, and the bad items never reach
    ``pytest_collection_modifyitems``.
    """
    report = yield
    config = collector.config
    if not is_xdist_worker(config) or report.outcome != "passed":
        return report
    manager = config.stash.get(MANAGER_KEY, None)
    cfg = manager.config if manager is not None else SandboxConfig()
    problems = []
    for node in report.result:
        if not isinstance(node, pytest.Item):
            continue
        problems.extend(marker_problems(node, cfg))
    if problems:
        report.outcome = "failed"
        report.longrepr = "pytest-livesandbox: bad markers:\n  " + "\n  ".join(problems)
        report.result = []
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Hold the sandbox lock around the whole test: exclusive for chaos, shared otherwise."""
    info = _info(item.config)
    if info is None:
        return (yield)
    alone = item.stash[EXCLUSIVE_KEY] = exclusive(item)
    with SandboxLock(chaos_dir(info)).hold(exclusive=alone):
        return (yield)


def exclusive(item: pytest.Item) -> bool:
    """The test must have the sandbox alone: a fault beyond its own requests, or ``chaos``.

    (The ``chaos`` fixture may inject anything, so a test that asks for it runs alone.)
    """
    plan = item.stash.get(PLAN_KEY, None)
    if plan and not all(fault.scoped for fault in plan.faults):
        return True
    return "chaos" in getattr(item, "fixturenames", ())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller removes a kube sandbox's chaos folder (ledger, lock) once nothing is in it."""
    if is_xdist_worker(session.config):
        return
    info = _info(session.config)
    if info is not None and not info.workdir:
        remove_chaos_dir(info)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before each test: undo faults a dead process left; refuse to run on a degraded sandbox."""
    info = _info(item.config)
    if info is None:
        return
    driver = _driver(info, item.nodeid)
    degraded = chaos_dir(info) / DEGRADED_FILE
    if driver.clean() and not degraded.exists():
        return
    with FileLock(str(chaos_dir(info) / "chaos-repair.lock")):
        if not item.stash.get(EXCLUSIVE_KEY, True):
            # Tests beside us may hold live scoped faults: undo only what dead processes left.
            done = driver.repair(only_stale=True)
            if not degraded.exists():
                return
            if not driver.clean():
                raise ChaosError(
                    "the sandbox is degraded and could not be repaired while other tests "
                    f"hold faults (degraded by: {degraded.read_text()})"
                )
        done = driver.repair(only_stale=False)
        problems = driver.baseline_problems(_verify_timeout(item.config))
        if problems:
            reason = degraded.read_text() if degraded.exists() else ""
            raise ChaosError(
                "the sandbox is degraded and could not be repaired: "
                + "; ".join(problems)
                + (f" (degraded by: {reason})" if reason else "")
                + (f"; repair attempts: {'; '.join(done)}" if done else "")
            )
        degraded.unlink(missing_ok=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Apply the marker plan just before the body; remove it right after."""
    plan = item.stash.get(PLAN_KEY, None)
    session = item.stash.get(SESSION_KEY, None)
    if session is None:
        return (yield)
    try:
        if plan:
            session.start_plan(plan)
        return (yield)
    except BaseException:
        session.body_failed = True  # then an unobserved fault is no news
        raise
    finally:
        if plan:
            item.stash[ERRORS_KEY] = session.remove_all()


@pytest.fixture(autouse=True)
def _livesandbox_chaos_plan(request: pytest.FixtureRequest) -> None:
    # Tests with chaos markers need the chaos fixture (its teardown restores and verifies).
    if request.node.stash.get(PLAN_KEY, None):
        request.getfixturevalue("chaos")


@pytest.fixture
def chaos(request: pytest.FixtureRequest, livesandbox: Sandbox) -> Iterator[Chaos]:
    """Inject faults imperatively; all are undone and the sandbox verified after the test.

    Example::

        def test_retries(chaos, live_http):
            with chaos.latency(300, target="db"):
                assert live_http.get("/items", timeout=5).status_code == 200
            chaos.evict("backend")
    """
    info = livesandbox.info
    node = request.node
    records: list[dict[str, Any]] = []
    node.user_properties.append(("livesandbox_chaos", records))
    alone = node.stash.get(EXCLUSIVE_KEY, True)
    session = Chaos(_driver(info, node.nodeid), records, scope_token(node.nodeid), exclusive=alone)
    node.stash[SESSION_KEY] = session
    try:
        yield session
    finally:
        _restore(session, node, info, _verify_timeout(request.config))


def _restore(session: Chaos, node: pytest.Item, info: SandboxInfo, timeout: float) -> None:
    errors = node.stash.get(ERRORS_KEY, []) + session.remove_all()
    if not session.exclusive:
        # Only scoped faults of this test, all removed above; the sandbox-wide baseline would
        # see the faults of the tests running beside this one.
        if errors:
            raise ChaosError("chaos teardown: " + "; ".join(errors))
        _check_observed(session)
        return
    problems = session.driver.baseline_problems(timeout)
    if not errors and not problems:
        _check_observed(session)
        return
    # Try once to put things right, so that only this test fails, not the rest of the run.
    repaired = session.driver.repair(only_stale=False)
    still = session.driver.baseline_problems(timeout)
    reasons = errors + problems
    if still:
        (chaos_dir(info) / DEGRADED_FILE).write_text(f"{node.nodeid}: {'; '.join(still)}")
    raise ChaosError(
        "chaos teardown: the sandbox did not return to baseline: "
        + "; ".join(reasons)
        + (f"; repaired: {'; '.join(repaired)}" if repaired and not still else "")
        + (f"; the sandbox stays degraded: {'; '.join(still)}" if still else "")
    )


def _check_observed(session: Chaos) -> None:
    missed = session.unobserved()
    if missed and not session.body_failed:
        raise ChaosNotObserved(
            "a chaos test whose fault never happened tests nothing: "
            + "; ".join(missed)
            + ". Fix the test, or give the marker require_hit=False"
        )

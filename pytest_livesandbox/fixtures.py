"""Public fixtures. Thin: they only hand out what the sandbox objects provide.

=====================  =========  ==========================================================
fixture                scope      what it is
=====================  =========  ==========================================================
``livesandbox``        session    the run's :class:`~pytest_livesandbox.sandbox.Sandbox`
``live_url``           session    base URL of the app, e.g. ``http://127.0.0.1:41234``
``live_http``          function   ``httpx.Client`` with ``base_url=live_url``
``live_async_http``    function   ``httpx.AsyncClient`` with ``base_url=live_url``
``live_dsn``           session    ``postgresql://`` URL of the app database (app role)
``live_db``            function   ``psycopg.Connection`` in a transaction rolled back after
                                  the test; with ``@pytest.mark.db_isolation("database")``
                                  a connection to a fresh database of its own instead
``live_db_factory``    function   ``make() -> IsolatedDatabase``: fresh databases, dropped after
=====================  =========  ==========================================================

Example::

    def test_unique_name(live_http):
        assert live_http.post("/items", json={"name": "a"}).status_code == 201
        assert live_http.post("/items", json={"name": "a"}).status_code == 409
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .chaos.scope import scope_headers
from .config import in_ci
from .errors import SandboxError
from .locations import state_root
from .parallel import SandboxManager
from .postgres.isolation import (
    Connection,
    DatabaseCloner,
    IsolatedDatabase,
    TransactionJanitor,
    validate_db_isolation,
)
from .sandbox import Sandbox

MANAGER_KEY = pytest.StashKey[SandboxManager]()
JANITOR_KEY = pytest.StashKey[TransactionJanitor]()
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _manager(config: pytest.Config) -> SandboxManager:
    manager = config.stash.get(MANAGER_KEY, None)
    if manager is None:
        message = (
            "no sandbox for this run: start pytest with --sandbox=local (or set "
            "livesandbox_backend in the ini file / LIVESANDBOX_BACKEND)"
        )
        if in_ci():
            pytest.fail(f"{message}; live tests may not skip when CI=true", pytrace=False)
        pytest.skip(message)
    return manager


@pytest.fixture(scope="session")
def livesandbox(request: pytest.FixtureRequest) -> Sandbox:
    """The run's sandbox (shared by all tests and, under xdist, all workers)."""
    manager = _manager(request.config)
    try:
        return manager.get()
    except SandboxError as exc:
        message = f"sandbox could not be provisioned: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def live_url(livesandbox: Sandbox) -> str:
    """Base URL of the app under test."""
    endpoint = livesandbox.info.endpoint
    if endpoint is None:
        pytest.fail(
            "this sandbox runs no app: set --sandbox-app-cmd (ini livesandbox_app_cmd) to the "
            "command that starts it (docker: --sandbox-image app=IMAGE)",
            pytrace=False,
        )
    return endpoint


@pytest.fixture(scope="session")
def _livesandbox_transport() -> Iterator[httpx.HTTPTransport]:
    # One connection pool for the session; per-test clients stay cheap and independent.
    transport = httpx.HTTPTransport(retries=0)
    yield transport
    transport.close()


def _test_headers(request: pytest.FixtureRequest, sandbox: Sandbox) -> dict[str, str]:
    # Through a fault proxy, requests carry the test's scope token (client -> app faults act
    # on the requests of the test that asked for them only; the proxy strips the header).
    return scope_headers(request.node.nodeid) if sandbox.info.extra.get("fault_proxy") else {}


@pytest.fixture
def live_http(
    request: pytest.FixtureRequest,
    livesandbox: Sandbox,
    live_url: str,
    _livesandbox_transport: httpx.HTTPTransport,
) -> httpx.Client:
    """An ``httpx.Client`` for the app: ``live_http.get("/items")``. Fresh cookies per test."""
    return httpx.Client(
        base_url=live_url,
        transport=_livesandbox_transport,
        timeout=HTTP_TIMEOUT,
        headers=_test_headers(request, livesandbox),
    )


@pytest.fixture
def live_async_http(
    request: pytest.FixtureRequest, livesandbox: Sandbox, live_url: str
) -> Iterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` for the app (use it from your async test runner)."""
    client = httpx.AsyncClient(
        base_url=live_url, timeout=HTTP_TIMEOUT, headers=_test_headers(request, livesandbox)
    )
    yield client
    if not client.is_closed:
        # The test's event loop is gone; close on a private one without blocking this thread's.
        closer = threading.Thread(target=lambda: asyncio.run(client.aclose()), daemon=True)
        closer.start()
        closer.join(5)


@pytest.fixture(scope="session")
def live_dsn(livesandbox: Sandbox) -> str:
    """``postgresql://`` URL of the app database, as the app's role (contains the password)."""
    if livesandbox.info.db is None:
        pytest.fail("this sandbox has no database", pytrace=False)
    return livesandbox.info.db.dsn


@pytest.fixture(scope="session")
def _livesandbox_cloner(livesandbox: Sandbox) -> DatabaseCloner:
    info = livesandbox.info
    assert info.db is not None
    lock_dir = Path(info.workdir) if info.workdir else state_root()
    return DatabaseCloner(info.db, lock_dir / f"{info.id}.template.lock")


@pytest.fixture
def live_db_factory(
    _livesandbox_cloner: DatabaseCloner,
) -> Iterator[Callable[[], IsolatedDatabase]]:
    """Make fresh databases cloned from the app schema; all are dropped after the test.

    Example::

        def test_commits(live_db_factory):
            db = live_db_factory()
            with db.connect(autocommit=True) as conn:
                conn.execute("insert into items(name) values ('x')")
    """
    made: list[IsolatedDatabase] = []

    def make() -> IsolatedDatabase:
        database = _livesandbox_cloner.create()
        made.append(database)
        return database

    yield make
    for database in made:
        _livesandbox_cloner.drop(database)


@pytest.fixture
def live_db(request: pytest.FixtureRequest, live_dsn: str) -> Iterator[Connection]:
    """A psycopg connection to the app database inside a transaction rolled back after the test.

    ``@pytest.mark.db_isolation("database")`` gives a connection to a fresh cloned database
    instead, where ``commit()`` is allowed.
    """
    marker = request.node.get_closest_marker("db_isolation")
    if marker is not None and validate_db_isolation(marker.args, marker.kwargs) == "database":
        make = request.getfixturevalue("live_db_factory")
        with make().connect() as conn:
            yield conn
        return
    janitor = request.config.stash.get(JANITOR_KEY, None)
    if janitor is None or janitor.dsn != live_dsn:
        janitor = TransactionJanitor(live_dsn)
        request.config.stash[JANITOR_KEY] = janitor
    with janitor.transaction() as conn:
        yield conn

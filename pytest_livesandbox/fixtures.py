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
``live_db_role``       function   ``make(name, grants=, rls_settings=, login=) -> DbRole``: real
                                  roles in ``live_db``'s database, dropped after the test
``db_role_audit``      function   ``audit(role=None) -> RoleAudit``: what a role may do per table
=====================  =========  ==========================================================

:func:`make_db_role` builds a named role fixture in a conftest (see its docstring).

Example::

    def test_unique_name(live_http):
        assert live_http.post("/items", json={"name": "a"}).status_code == 201
        assert live_http.post("/items", json={"name": "a"}).status_code == 409
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from .chaos.scope import scope_headers
from .config import in_ci
from .errors import RoleError, SandboxError, TeardownError
from .locations import state_root
from .parallel import SandboxManager
from .postgres.audit import RoleAudit, audit_role
from .postgres.grants import DbRole, RoleMaker
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
#: The database the test's ``live_db`` is connected to (a clone under db_isolation("database")).
LIVE_DB_NAME_KEY = pytest.StashKey[str]()
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
        database = make()
        request.node.stash[LIVE_DB_NAME_KEY] = database.name
        with database.connect() as conn:
            yield conn
        return
    janitor = request.config.stash.get(JANITOR_KEY, None)
    if janitor is None or janitor.dsn != live_dsn:
        janitor = TransactionJanitor(live_dsn)
        request.config.stash[JANITOR_KEY] = janitor
    with janitor.transaction() as conn:
        yield conn


def _uses_database_clone(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("db_isolation")
    return marker is not None and validate_db_isolation(marker.args, marker.kwargs) == "database"


def _test_database(request: pytest.FixtureRequest, livesandbox: Sandbox) -> str:
    """The database ``live_db`` uses in this test (its clone made first, if it has one)."""
    assert livesandbox.info.db is not None
    if _uses_database_clone(request):
        request.getfixturevalue("live_db")
        return str(request.node.stash[LIVE_DB_NAME_KEY])
    return livesandbox.info.db.dbname


@pytest.fixture(scope="session")
def _livesandbox_role_admin(
    livesandbox: Sandbox,
) -> Iterator[Callable[[], psycopg.Connection[Any]]]:
    # One superuser connection to the app database for every test's roles (a connect is ~10 ms).
    info = livesandbox.info
    held: list[psycopg.Connection[Any]] = []

    def connection() -> psycopg.Connection[Any]:
        assert info.db is not None
        if not held or held[0].closed or held[0].broken:
            held[:] = [
                psycopg.connect(info.db.url(admin=True), autocommit=True, connect_timeout=10)
            ]
        return held[0]

    yield connection
    for conn in held:
        conn.close()


@pytest.fixture
def live_db_role(
    request: pytest.FixtureRequest,
    livesandbox: Sandbox,
    _livesandbox_role_admin: Callable[[], psycopg.Connection[Any]],
) -> Iterator[Callable[..., DbRole]]:
    """Make real PostgreSQL roles for this test; all are dropped after it (also on failure).

    The role lives in the database ``live_db`` uses (under ``db_isolation("database")`` its
    clone, so what the test committed there is visible). Names are made unique
    (``role.name``); the connection is autocommit. Example::

        @pytest.mark.db_isolation("database")
        def test_tenant_a_sees_only_its_rows(live_db, live_db_role):
            ...  # insert rows of tenants a and b through live_db, commit
            role = live_db_role("tenant_a", grants={"notes": "SELECT"},
                                rls_settings={"app.tenant_id": "a"})
            rows = role.conn.execute("SELECT tenant FROM notes").fetchall()
            assert {r[0] for r in rows} == {"a"}
    """
    info = livesandbox.info
    if info.db is None:
        pytest.fail("this sandbox has no database", pytrace=False)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    dbname = _test_database(request, livesandbox)
    shared = _livesandbox_role_admin() if dbname == info.db.dbname else None
    maker = RoleMaker(info.db, dbname, label=worker, admin=shared)
    nodeid = request.node.nodeid

    def make(
        name: str = "role",
        *,
        grants: Mapping[str, Any] | None = None,
        rls_settings: Mapping[str, object] | None = None,
        login: bool = True,
    ) -> DbRole:
        try:
            return maker.make(name, grants=grants, rls_settings=rls_settings, login=login)
        except RoleError as exc:
            raise RoleError(f"{nodeid}: live_db_role({name!r}): {exc}") from None

    yield make
    problems = maker.drop_all()
    if problems:
        raise TeardownError(f"{nodeid}: live_db_role teardown: {'; '.join(problems)}")


def make_db_role(
    name: str,
    *,
    grants: Mapping[str, Any] | None = None,
    rls_settings: Mapping[str, object] | None = None,
    login: bool = True,
) -> Any:
    """A fixture (for a conftest) that gives each test a fresh role made as asked.

    Example (conftest.py)::

        from pytest_livesandbox.fixtures import make_db_role

        tenant_a = make_db_role("tenant_a", grants={"notes": "SELECT"},
                                rls_settings={"app.tenant_id": "a"})

        def test_reads_own_rows(tenant_a):
            tenant_a.conn.execute("SELECT * FROM notes")
    """

    @pytest.fixture(name=name)
    def role_fixture(live_db_role: Callable[..., DbRole]) -> DbRole:
        return live_db_role(name, grants=grants, rls_settings=rls_settings, login=login)

    return role_fixture


@pytest.fixture
def db_role_audit(request: pytest.FixtureRequest, livesandbox: Sandbox) -> Callable[..., RoleAudit]:
    """``audit(role=None) -> RoleAudit``: what a role (default: the app's) may do per table.

    Read in the database ``live_db`` uses. Example::

        def test_app_role_is_least_privilege(db_role_audit):
            audit = db_role_audit()
            assert not audit.superuser
            assert audit.table("notes").rls_applies
    """
    info = livesandbox.info
    if info.db is None or not info.db.admin_user:
        pytest.fail("db_role_audit needs the sandbox's admin connection", pytrace=False)
    dbname = _test_database(request, livesandbox)

    def audit(role: str | None = None) -> RoleAudit:
        assert info.db is not None
        with psycopg.connect(info.db.url(admin=True, dbname=dbname), autocommit=True) as conn:
            return audit_role(conn, role or info.db.user)

    return audit

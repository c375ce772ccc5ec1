#!/usr/bin/env python3
"""Demo app under test for pytest-livesandbox: a small JSON API backed by PostgreSQL.

Dependencies: the standard library, ``psycopg`` and ``psycopg_pool`` (3.1 .. 3.3).
Run with ``python3 app.py``; configuration and the HTTP contract are in README.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

if TYPE_CHECKING:
    from psycopg.rows import TupleRow

    DbConnection = psycopg.Connection[TupleRow]

BIGINT_MAX = 2**63 - 1
MAX_BODY_BYTES = 1024 * 1024
MAX_TEXT_LEN = 500
MAX_SLEEP_MS = 60_000
MAX_ALLOC_MB = 4096
ALLOC_HOLD_S = 0.1
SHUTDOWN_GRACE_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 5
POOL_RECONNECT_TIMEOUT_S = 10.0
RETRY_AFTER = {"Retry-After": "1"}

SCHEMA_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS items (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS accounts (
        id bigserial PRIMARY KEY,
        owner text NOT NULL,
        balance bigint NOT NULL CHECK (balance >= 0)
    )""",
    """CREATE TABLE IF NOT EXISTS transfers (
        id bigserial PRIMARY KEY,
        from_id bigint REFERENCES accounts (id),
        to_id bigint REFERENCES accounts (id),
        amount bigint NOT NULL CHECK (amount > 0),
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
)
# Tenant-scoped rows under row-level security: a connection sees the rows of the tenant in its
# app.tenant_id setting only. FORCE makes the policy apply to the table's owner (the app's role)
# too; without it the owner bypasses the policy and every tenant sees every row.
NOTES_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS notes (
        id bigserial PRIMARY KEY,
        tenant text NOT NULL DEFAULT current_setting('app.tenant_id', true),
        body text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """DO $$ BEGIN
      IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = 'notes'::regclass) THEN
        ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_policy
                     WHERE polrelid = 'notes'::regclass AND polname = 'notes_tenant') THEN
        CREATE POLICY notes_tenant ON notes
          USING (tenant = current_setting('app.tenant_id', true))
          WITH CHECK (tenant = current_setting('app.tenant_id', true));
      END IF;
    END $$""",
)
FORCE_RLS_SQL = """DO $$ BEGIN
  IF NOT (SELECT relforcerowsecurity FROM pg_class WHERE oid = 'notes'::regclass) THEN
    ALTER TABLE notes FORCE ROW LEVEL SECURITY;
  END IF;
END $$"""
MIGRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('livesandbox-demo-app-schema'))"

Payload = dict[str, Any]
#: Bugs the app can be started with (DEMO_APP_BUGS=a,b), so its example tests can show they
#: catch them: the access token's expiry not checked; the notes policy not forced on the owner.
KNOWN_BUGS = frozenset({"token_expiry_ignored", "rls_not_forced"})


# --------------------------------------------------------------------------- logging


class _Log:
    """Thread-safe line output: request lines to stdout, everything else to stderr."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.secrets: list[str] = []

    def scrub(self, text: str) -> str:
        """Remove known secrets (the DB password) from ``text``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _write(self, stream: Any, line: str) -> None:
        with self._lock:
            try:
                stream.write(self.scrub(line) + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    def out(self, line: str) -> None:
        """Write one line to stdout and flush."""
        self._write(sys.stdout, line)

    def err(self, line: str) -> None:
        """Write one line to stderr and flush."""
        self._write(sys.stderr, line)


LOG = _Log()


class _ScrubFilter(logging.Filter):
    """Strip secrets from records emitted by libraries (e.g. psycopg.pool warnings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = LOG.scrub(record.getMessage())
        record.args = None
        return True


def describe(exc: BaseException) -> str:
    """One-line, secret-free description of an exception."""
    text = " ".join(str(exc).split())
    return LOG.scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


# --------------------------------------------------------------------------- config


class ConfigError(Exception):
    """Invalid or missing environment configuration."""


@dataclass(frozen=True)
class Config:
    """Runtime configuration read from the environment."""

    database_url: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    pool_max: int = 5
    pool_timeout: float = 2.0
    statement_timeout_ms: int = 5000
    token_secret: bytes = field(default=b"", repr=False)
    token_ttl_s: int = 900
    refresh_ttl_s: int = 86400
    bugs: frozenset[str] = frozenset()


def _env_number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def load_config(env: Mapping[str, str]) -> Config:
    """Build a Config from environment variables; raise ConfigError on bad values."""
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError("DATABASE_URL is required")
    try:
        conninfo_to_dict(url)
    except psycopg.Error:
        raise ConfigError("DATABASE_URL is not a valid PostgreSQL DSN/URL") from None
    port = _env_int(env, "PORT", 8000, 0)
    if port > 65535:
        raise ConfigError(f"PORT must be <= 65535, got {port}")
    timeout = _env_number(env, "DB_POOL_TIMEOUT", 2.0, 0.001)
    bugs = frozenset(b.strip() for b in env.get("DEMO_APP_BUGS", "").split(",") if b.strip())
    if bugs - KNOWN_BUGS:
        raise ConfigError(
            f"DEMO_APP_BUGS: unknown {sorted(bugs - KNOWN_BUGS)}; known: {sorted(KNOWN_BUGS)}"
        )
    secret = env.get("TOKEN_SECRET", "").encode() or hashlib.sha256(url.encode()).digest()
    return Config(
        database_url=url,
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=port,
        pool_max=_env_int(env, "DB_POOL_MAX", 5, 1),
        pool_timeout=timeout,
        statement_timeout_ms=_env_int(env, "DB_STATEMENT_TIMEOUT_MS", 5000, 0),
        token_secret=secret,
        token_ttl_s=_env_int(env, "TOKEN_TTL_S", 900, 1),
        refresh_ttl_s=_env_int(env, "REFRESH_TTL_S", 86400, 1),
        bugs=bugs,
    )


def dsn_password(dsn: str) -> str:
    """Return the password embedded in ``dsn`` ("" if none or unparsable)."""
    try:
        return str(conninfo_to_dict(dsn).get("password") or "")
    except psycopg.Error:
        return ""


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` in key=value form with the password replaced by ``***``."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DATABASE_URL>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo("", **params)


# --------------------------------------------------------------------------- database


class Database:
    """Connection pool plus schema-migration state."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.migrated = threading.Event()
        self._lock = threading.Lock()
        self._in_use = 0
        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in conninfo_to_dict(config.database_url) and not os.environ.get(
            "PGCONNECT_TIMEOUT"
        ):
            kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
        self.pool: ConnectionPool[DbConnection] = ConnectionPool(
            config.database_url,
            open=False,
            min_size=1,
            max_size=config.pool_max,
            timeout=config.pool_timeout,
            kwargs=kwargs,
            configure=self._configure_connection,
            reconnect_timeout=POOL_RECONNECT_TIMEOUT_S,
            name="demo-app",
        )

    def _configure_connection(self, conn: DbConnection) -> None:
        """Set the per-session statement timeout on every new pooled connection."""
        ms = str(self.config.statement_timeout_ms)
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (ms,))
        conn.commit()

    def open(self) -> None:
        """Start the pool without waiting for the database."""
        self.pool.open(wait=False)

    def close(self) -> None:
        """Close the pool (connections in use are closed when returned)."""
        self.pool.close(timeout=2.0)

    @contextmanager
    def connection(self) -> Iterator[DbConnection]:
        """Borrow a pooled connection; commit on success, roll back on error."""
        with self.pool.connection() as conn:
            with self._lock:
                self._in_use += 1
            try:
                yield conn
            finally:
                with self._lock:
                    self._in_use -= 1

    def all_connections_busy(self) -> bool:
        """Tell whether every pool slot is lent to a request (exhausted rather than DB down)."""
        with self._lock:
            return self._in_use >= self.config.pool_max

    def migrate(self) -> None:
        """Create the schema idempotently, serialized across app instances."""
        with self.connection() as conn, conn.transaction():
            conn.execute(MIGRATION_LOCK_SQL)
            for statement in SCHEMA_STATEMENTS + NOTES_STATEMENTS:
                conn.execute(statement)
            if "rls_not_forced" not in self.config.bugs:
                conn.execute(FORCE_RLS_SQL)
        self.migrated.set()

    def migrate_until_done(self, stop: threading.Event) -> None:
        """Retry the migration with capped backoff until it succeeds or ``stop`` is set."""
        delay, attempt = 0.5, 0
        while not stop.is_set():
            attempt += 1
            try:
                self.migrate()
            except Exception as exc:
                if stop.is_set():
                    return
                LOG.err(
                    f"demo-app: migration attempt {attempt} failed: {describe(exc)}; "
                    f"retrying in {delay:.1f}s"
                )
            else:
                LOG.err(f"demo-app: schema migrated (attempt {attempt})")
                return
            stop.wait(delay)
            delay = min(delay * 2, 5.0)


# --------------------------------------------------------------------------- HTTP layer


class ApiError(Exception):
    """An error with a defined HTTP status and JSON body."""

    def __init__(
        self, status: int, payload: Payload, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(payload.get("error", "error"))
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


def bad_request(detail: str) -> ApiError:
    """400 with a human-readable detail."""
    return ApiError(400, {"error": "bad_request", "detail": detail})


def not_found(detail: str) -> ApiError:
    """404 with a human-readable detail."""
    return ApiError(404, {"error": "not_found", "detail": detail})


@dataclass
class Request:
    """A parsed HTTP request as seen by route handlers."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json_object(self) -> Payload:
        """Decode the body as a JSON object or raise 400."""
        if not self.body.strip():
            raise bad_request("request body must be a JSON object")
        try:
            data = json.loads(self.body)
        except ValueError:
            raise bad_request("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise bad_request("request body must be a JSON object")
        return data

    def query_int(self, name: str, low: int, high: int) -> int:
        """Return integer query parameter ``name`` within [low, high] or raise 400."""
        values = self.query.get(name)
        if not values:
            raise bad_request(f"query parameter {name!r} is required")
        try:
            value = int(values[-1])
        except ValueError:
            raise bad_request(f"query parameter {name!r} must be an integer") from None
        if not low <= value <= high:
            raise bad_request(f"query parameter {name!r} must be between {low} and {high}")
        return value

    def path_id(self, what: str) -> int:
        """Return the ``id`` path parameter, 404 if it cannot be a bigint."""
        value = int(self.params["id"])
        if value > BIGINT_MAX:
            raise not_found(f"{what} {value} not found")
        return value


def text_field(body: Payload, name: str) -> str:
    """Validate a required, non-empty text field."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name!r} must be a non-empty string")
    if len(value) > MAX_TEXT_LEN or "\x00" in value:
        raise bad_request(f"{name!r} must be at most {MAX_TEXT_LEN} characters without NUL")
    return value


def int_field(body: Payload, name: str, low: int, high: int = BIGINT_MAX) -> int:
    """Validate a required integer field within [low, high]."""
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name!r} must be an integer")
    if not low <= value <= high:
        raise bad_request(f"{name!r} must be between {low} and {high}")
    return value


Response = tuple[int, Payload | None]
RouteHandler = Callable[["Database", Request], Response]


# --------------------------------------------------------------------------- routes


def healthz(db: Database, req: Request) -> Response:
    """Liveness: never touches the database."""
    return 200, {"status": "ok"}


def readyz(db: Database, req: Request) -> Response:
    """Readiness: schema migrated and ``SELECT 1`` succeeds."""
    if not db.migrated.is_set():
        return 503, {"status": "not_ready", "reason": "migration_pending"}
    try:
        with db.connection() as conn:
            conn.execute("SELECT 1").fetchone()
    except PoolTimeout:
        reason = "db_pool_exhausted" if db.all_connections_busy() else "db_unavailable"
        return 503, {"status": "not_ready", "reason": reason}
    except errors.QueryCanceled:
        return 503, {"status": "not_ready", "reason": "db_timeout"}
    except psycopg.Error as exc:
        LOG.err(f"demo-app: readiness check failed: {describe(exc)}")
        return 503, {"status": "not_ready", "reason": "db_unavailable"}
    return 200, {"status": "ready"}


def create_item(db: Database, req: Request) -> Response:
    """Insert an item; duplicate names are a 409 conflict."""
    name = text_field(req.json_object(), "name")
    try:
        with db.connection() as conn:
            row = conn.execute(
                "INSERT INTO items (name) VALUES (%s) RETURNING id, name", (name,)
            ).fetchone()
    except errors.UniqueViolation:
        raise ApiError(409, {"error": "conflict", "detail": "item name already exists"}) from None
    assert row is not None
    return 201, {"id": row[0], "name": row[1]}


def list_items(db: Database, req: Request) -> Response:
    """All items ordered by id."""
    with db.connection() as conn:
        rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    return 200, {"items": [{"id": r[0], "name": r[1]} for r in rows]}


def get_item(db: Database, req: Request) -> Response:
    """One item or 404."""
    item_id = req.path_id("item")
    with db.connection() as conn:
        row = conn.execute("SELECT id, name FROM items WHERE id = %s", (item_id,)).fetchone()
    if row is None:
        raise not_found(f"item {item_id} not found")
    return 200, {"id": row[0], "name": row[1]}


def delete_item(db: Database, req: Request) -> Response:
    """Delete an item: 204, or 404 if it does not exist."""
    item_id = req.path_id("item")
    with db.connection() as conn:
        deleted = conn.execute("DELETE FROM items WHERE id = %s", (item_id,)).rowcount
    if not deleted:
        raise not_found(f"item {item_id} not found")
    return 204, None


def create_account(db: Database, req: Request) -> Response:
    """Open an account with a non-negative balance."""
    body = req.json_object()
    owner = text_field(body, "owner")
    balance = int_field(body, "balance", 0)
    with db.connection() as conn:
        row = conn.execute(
            "INSERT INTO accounts (owner, balance) VALUES (%s, %s) RETURNING id, owner, balance",
            (owner, balance),
        ).fetchone()
    assert row is not None
    return 201, {"id": row[0], "owner": row[1], "balance": row[2]}


def get_account(db: Database, req: Request) -> Response:
    """One account or 404."""
    account_id = req.path_id("account")
    with db.connection() as conn:
        row = conn.execute(
            "SELECT id, owner, balance FROM accounts WHERE id = %s", (account_id,)
        ).fetchone()
    if row is None:
        raise not_found(f"account {account_id} not found")
    return 200, {"id": row[0], "owner": row[1], "balance": row[2]}


def create_transfer(db: Database, req: Request) -> Response:
    """Move money atomically; rows are locked in ascending id order to avoid deadlocks."""
    body = req.json_object()
    src = int_field(body, "from", -BIGINT_MAX - 1)
    dst = int_field(body, "to", -BIGINT_MAX - 1)
    amount = int_field(body, "amount", 1)
    if src == dst:
        raise bad_request("'from' and 'to' must be different accounts")
    with db.connection() as conn, conn.transaction():
        balances: dict[int, int] = {}
        for account_id in sorted((src, dst)):
            row = conn.execute(
                "SELECT balance FROM accounts WHERE id = %s FOR UPDATE", (account_id,)
            ).fetchone()
            if row is None:
                raise not_found(f"account {account_id} not found")
            balances[account_id] = row[0]
        if balances[src] < amount:
            raise ApiError(409, {"error": "insufficient_funds"})
        conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src))
        conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
        row = conn.execute(
            "INSERT INTO transfers (from_id, to_id, amount) VALUES (%s, %s, %s) RETURNING id",
            (src, dst, amount),
        ).fetchone()
    assert row is not None
    return 200, {"id": row[0], "from": src, "to": dst, "amount": amount}


def slow(db: Database, req: Request) -> Response:
    """Sleep in the app (no DB) for ``ms`` milliseconds."""
    ms = req.query_int("ms", 0, MAX_SLEEP_MS)
    time.sleep(ms / 1000)
    return 200, {"slept_ms": ms}


def db_sleep(db: Database, req: Request) -> Response:
    """Hold one pooled connection while the database sleeps ``ms`` milliseconds."""
    ms = req.query_int("ms", 0, MAX_SLEEP_MS)
    with db.connection() as conn:
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000,))
    return 200, {"slept_ms": ms}


def alloc(db: Database, req: Request) -> Response:
    """Allocate and touch ``mb`` MiB, hold it briefly, then release it."""
    mb = req.query_int("mb", 0, MAX_ALLOC_MB)
    size = mb * 1024 * 1024
    buf = bytearray(size)
    buf[::4096] = b"\x01" * (size // 4096)
    time.sleep(ALLOC_HOLD_S)
    del buf
    return 200, {"allocated_mb": mb}


# --------------------------------------------------------------------------- tokens, tenants


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(config: Config, claims: Payload, ttl_s: int) -> tuple[str, float]:
    """A JWT-style token: base64url(JSON claims) "." base64url(HMAC-SHA256); returns it and exp."""
    exp = time.time() + ttl_s  # the app's own clock (a clock fault moves it)
    body = _b64(json.dumps({**claims, "exp": exp}, separators=(",", ":")).encode())
    sig = _b64(hmac.new(config.token_secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}", exp


def check_token(config: Config, token: str, kind: str) -> Payload:
    """The token's claims, or 401 (bad signature, wrong kind, expired)."""
    body, _, sig = token.partition(".")
    good = _b64(hmac.new(config.token_secret, body.encode(), hashlib.sha256).digest())
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        claims = None
    if not sig or not hmac.compare_digest(sig, good) or not isinstance(claims, dict):
        raise ApiError(401, {"error": "invalid_token"})
    if claims.get("typ") != kind:
        raise ApiError(401, {"error": "invalid_token", "detail": f"not an {kind} token"})
    expiry_checked = kind == "refresh" or "token_expiry_ignored" not in config.bugs
    if expiry_checked and time.time() >= float(claims.get("exp", 0)):
        raise ApiError(401, {"error": "token_expired"})
    return claims


def bearer_claims(db: Database, req: Request) -> Payload:
    """The access token's claims from ``Authorization: Bearer ...``, or 401."""
    header = next((v for k, v in req.headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, {"error": "missing_token"})
    return check_token(db.config, token.strip(), "access")


def _token_pair(config: Config, user: str, tenant: str) -> Payload:
    claims = {"sub": user, "tenant": tenant}
    access, exp = issue_token(config, {**claims, "typ": "access"}, config.token_ttl_s)
    refresh, _ = issue_token(config, {**claims, "typ": "refresh"}, config.refresh_ttl_s)
    return {"access_token": access, "refresh_token": refresh, "expires_at": exp}


def create_token(db: Database, req: Request) -> Response:
    """Log in as ``user`` of ``tenant``: an access token (TOKEN_TTL_S) and a refresh token."""
    body = req.json_object()
    return 201, _token_pair(db.config, text_field(body, "user"), text_field(body, "tenant"))


def refresh_token(db: Database, req: Request) -> Response:
    """A new token pair for a valid refresh token (the access token may have expired)."""
    claims = check_token(db.config, text_field(req.json_object(), "refresh_token"), "refresh")
    return 200, _token_pair(db.config, str(claims["sub"]), str(claims["tenant"]))


def me(db: Database, req: Request) -> Response:
    """Who the access token says the caller is."""
    claims = bearer_claims(db, req)
    return 200, {"user": claims["sub"], "tenant": claims["tenant"], "expires_at": claims["exp"]}


def app_time(db: Database, req: Request) -> Response:
    """The app's own clock (Unix seconds and UTC ISO 8601)."""
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return 200, {"now": now, "utc": iso}


def create_note(db: Database, req: Request) -> Response:
    """Store a note for the caller's tenant (the row policy checks the tenant)."""
    tenant = str(bearer_claims(db, req)["tenant"])
    text = text_field(req.json_object(), "body")
    with db.connection() as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        row = conn.execute(
            "INSERT INTO notes (tenant, body) VALUES (%s, %s) RETURNING id", (tenant, text)
        ).fetchone()
    assert row is not None
    return 201, {"id": row[0], "tenant": tenant, "body": text}


def list_notes(db: Database, req: Request) -> Response:
    """The caller's tenant's notes: no WHERE clause, the row-level security policy filters."""
    tenant = str(bearer_claims(db, req)["tenant"])
    with db.connection() as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        rows = conn.execute("SELECT id, tenant, body FROM notes ORDER BY id").fetchall()
    return 200, {"notes": [{"id": r[0], "tenant": r[1], "body": r[2]} for r in rows]}


ROUTES: list[tuple[str, re.Pattern[str], RouteHandler]] = [
    ("GET", re.compile(r"/healthz"), healthz),
    ("GET", re.compile(r"/readyz"), readyz),
    ("GET", re.compile(r"/items"), list_items),
    ("POST", re.compile(r"/items"), create_item),
    ("GET", re.compile(r"/items/(?P<id>[0-9]{1,20})"), get_item),
    ("DELETE", re.compile(r"/items/(?P<id>[0-9]{1,20})"), delete_item),
    ("POST", re.compile(r"/accounts"), create_account),
    ("GET", re.compile(r"/accounts/(?P<id>[0-9]{1,20})"), get_account),
    ("POST", re.compile(r"/transfers"), create_transfer),
    ("GET", re.compile(r"/slow"), slow),
    ("GET", re.compile(r"/db-sleep"), db_sleep),
    ("GET", re.compile(r"/alloc"), alloc),
    ("GET", re.compile(r"/time"), app_time),
    ("POST", re.compile(r"/tokens"), create_token),
    ("POST", re.compile(r"/tokens/refresh"), refresh_token),
    ("GET", re.compile(r"/me"), me),
    ("GET", re.compile(r"/notes"), list_notes),
    ("POST", re.compile(r"/notes"), create_note),
]


def resolve(method: str, path: str) -> tuple[RouteHandler, dict[str, str]]:
    """Find the handler for ``method path``; raise 404 / 405 as JSON errors."""
    allowed: list[str] = []
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method == method:
            return handler, match.groupdict()
        allowed.append(route_method)
    if allowed:
        raise ApiError(
            405,
            {"error": "method_not_allowed", "detail": f"{method} not allowed on {path}"},
            {"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise not_found(f"no route for {method} {path}")


def map_exception(db: Database, exc: Exception) -> ApiError:
    """Translate an exception into the documented error contract."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PoolTimeout):
        # All slots lent out -> exhausted; otherwise the pool cannot reach the DB.
        if db.all_connections_busy():
            return ApiError(503, {"error": "db_pool_exhausted"}, RETRY_AFTER)
        return ApiError(503, {"error": "db_unavailable"}, RETRY_AFTER)
    if isinstance(exc, errors.QueryCanceled):
        return ApiError(504, {"error": "db_timeout"})
    if isinstance(exc, psycopg.OperationalError):
        LOG.err(f"demo-app: database unavailable: {describe(exc)}")
        return ApiError(503, {"error": "db_unavailable"}, RETRY_AFTER)
    if isinstance(exc, errors.NumericValueOutOfRange):
        return bad_request("numeric value out of range")
    if isinstance(exc, psycopg.IntegrityError):
        return ApiError(409, {"error": "conflict", "detail": "constraint violation"})
    if isinstance(exc, MemoryError):
        LOG.err("demo-app: MemoryError while handling request")
        return ApiError(500, {"error": "out_of_memory"})
    LOG.err("demo-app: unhandled error:\n" + traceback.format_exc().rstrip())
    return ApiError(500, {"error": "internal_error"})


class DemoServer(ThreadingHTTPServer):
    """Threaded HTTP server carrying app state for its handlers."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], db: Database) -> None:
        self.db = db
        self.shutting_down = False
        self.inflight = 0
        self.inflight_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        """Bind without the reverse-DNS lookup HTTPServer does (slow in containers)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class DemoServer6(DemoServer):
    """IPv6 variant, used when HOST contains a colon."""

    address_family = socket.AF_INET6


class RequestHandler(BaseHTTPRequestHandler):
    """Routes requests, maps errors to JSON, logs one line per request."""

    protocol_version = "HTTP/1.1"
    # Keep-alive + headers and body in separate writes + Nagle = a 40 ms delayed-ACK stall on
    # every response; TCP_NODELAY removes it.
    disable_nagle_algorithm = True
    server_version = "demo-app/1.0"
    timeout = 120

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, {"error": "length_required"})
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise bad_request("invalid Content-Length")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, {"error": "payload_too_large"})
        return self.rfile.read(length)

    def _handle(self) -> None:
        server = cast(DemoServer, self.server)
        started = time.monotonic()
        status = 500
        with server.inflight_lock:
            server.inflight += 1
        try:
            status, payload, headers = self._dispatch(server.db)
            if server.shutting_down:
                self.close_connection = True
            self._send(status, payload, headers)
        except OSError:
            self.close_connection = True  # client went away mid-response
        finally:
            with server.inflight_lock:
                server.inflight -= 1
            elapsed_ms = (time.monotonic() - started) * 1000
            target = "".join(c if c.isprintable() and c != " " else "?" for c in self.path)
            LOG.out(f"{self.command} {target} {status} {elapsed_ms:.1f}")

    def _dispatch(self, db: Database) -> tuple[int, Payload | None, dict[str, str]]:
        method = "GET" if self.command == "HEAD" else self.command
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            handler, params = resolve(method, url.path)
            request = Request(
                method, url.path, params, parse_qs(url.query), body, dict(self.headers.items())
            )
            status, payload = handler(db, request)
            return status, payload, {}
        except Exception as exc:
            err = map_exception(db, exc)
            return err.status, err.payload, err.headers

    def _send(self, status: int, payload: Payload | None, headers: dict[str, str]) -> None:
        self.send_response(status)
        body = b""
        if status != 204:
            body = json.dumps(payload if payload is not None else {}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Suppress the default access log (we log our own line in _handle)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Send http.server diagnostics (bad requests, timeouts) to stderr."""
        LOG.err(f"demo-app: http: {self.address_string()} {format % args}")


# --------------------------------------------------------------------------- main


def make_server(config: Config, db: Database) -> DemoServer:
    """Create and bind the HTTP server."""
    cls = DemoServer6 if ":" in config.host else DemoServer
    return cls((config.host, config.port), db)


def main() -> int:
    """Start pool, migration thread and HTTP server; run until SIGTERM/SIGINT."""
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        LOG.err(f"demo-app: configuration error: {exc}")
        return 2
    password = dsn_password(config.database_url)
    if len(password) >= 4:  # scrubbing 1-3 character strings would mangle every log line
        LOG.secrets.append(password)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubFilter())

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    db = Database(config)
    try:
        server = make_server(config, db)
    except OSError as exc:
        LOG.err(f"demo-app: cannot bind {config.host}:{config.port}: {exc}")
        return 1
    LOG.err(f"demo-app: database {redact_dsn(config.database_url)}")
    db.open()
    threading.Thread(
        target=db.migrate_until_done, args=(stop,), name="migrate", daemon=True
    ).start()
    serve = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
    )
    serve.start()
    host = f"[{config.host}]" if ":" in config.host else config.host
    LOG.out(f"demo-app listening on http://{host}:{server.server_port}")

    while not stop.wait(0.5):
        pass

    LOG.err("demo-app: shutting down")
    server.shutting_down = True
    server.shutdown()
    server.server_close()
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    while server.inflight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    db.close()
    LOG.err("demo-app: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

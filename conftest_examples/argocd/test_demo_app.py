"""The demo app deployed by Argo CD into its own sandbox namespace (same tests as ../kube)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest


def test_health(live_http: httpx.Client) -> None:
    assert live_http.get("/healthz").status_code == 200
    assert live_http.get("/readyz").json() == {"status": "ready"}


def test_runs_in_its_own_namespace(livesandbox) -> None:
    info = livesandbox.info
    assert info.backend == "kube"
    assert info.namespace == f"sandbox-{info.id}"


def test_duplicate_name_is_a_conflict(live_http: httpx.Client) -> None:
    name = f"item-{uuid.uuid4().hex[:8]}"
    assert live_http.post("/items", json={"name": name}).status_code == 201
    second = live_http.post("/items", json={"name": name})
    assert second.status_code == 409
    assert second.json()["error"] == "conflict"


def test_the_app_and_the_tests_share_the_database(
    live_http: httpx.Client, live_db: psycopg.Connection
) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    assert live_http.post("/items", json={"name": name}).status_code == 201
    row = live_db.execute("select count(*) from items where name = %s", (name,)).fetchone()
    assert row == (1,)


def test_concurrent_transfers_keep_the_total(live_url: str, make_account) -> None:
    a, b = make_account(1000), make_account(1000)

    def transfer(i: int) -> int:
        src, dst = (a, b) if i % 2 else (b, a)
        with httpx.Client(base_url=live_url, timeout=30) as client:
            body = {"from": src, "to": dst, "amount": 7}
            return client.post("/transfers", json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(transfer, range(20)))
    assert set(codes) <= {200, 409}
    with httpx.Client(base_url=live_url) as client:
        balances = [client.get(f"/accounts/{x}").json()["balance"] for x in (a, b)]
    assert sum(balances) == 2000


def test_unique_constraint_in_the_database(live_db: psycopg.Connection) -> None:
    live_db.execute("insert into items(name) values ('only-in-this-test')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        live_db.execute("insert into items(name) values ('only-in-this-test')")


def test_rows_from_the_previous_test_are_gone(live_db: psycopg.Connection) -> None:
    row = live_db.execute("select count(*) from items where name = 'only-in-this-test'").fetchone()
    assert row == (0,)


@pytest.mark.db_isolation("database")
def test_code_that_commits_gets_its_own_database(live_db: psycopg.Connection) -> None:
    live_db.execute("insert into items(name) values ('committed')")
    live_db.commit()
    assert live_db.execute("select count(*) from items").fetchone() == (1,)


def test_deployed_by_argocd(livesandbox) -> None:
    info = livesandbox.info
    assert info.extra["argocd_application"] == f"argocd/{info.namespace}"
    assert len(info.extra["synced_revision"]) == 40  # the commit Argo CD synced
    assert info.timings["sync_s"] > 0
    # The fault proxy's app route points at the pods Argo CD synced: the client goes through it.
    assert "app" in info.extra["fault_proxy"]["routes"]


@pytest.mark.latency(ms=300, target="app")
def test_latency_reaches_the_app_through_the_proxy(live_http: httpx.Client) -> None:
    began = time.monotonic()
    assert live_http.get("/healthz").status_code == 200
    assert time.monotonic() - began >= 0.3

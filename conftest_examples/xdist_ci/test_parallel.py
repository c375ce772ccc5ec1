"""Tests spread over xdist workers; each sees the same app and database, never others' rows."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest


@pytest.mark.parametrize("n", range(8))
def test_items_roundtrip(live_http: httpx.Client, n: int) -> None:
    name = f"ci-{n}-{uuid.uuid4().hex[:8]}"
    created = live_http.post("/items", json={"name": name})
    assert created.status_code == 201
    assert live_http.get(f"/items/{created.json()['id']}").json()["name"] == name


@pytest.mark.parametrize("n", range(4))
def test_rolled_back_rows_stay_invisible(live_db: psycopg.Connection, n: int) -> None:
    live_db.execute("insert into items(name) values (%s)", (f"invisible-{n}",))
    seen = live_db.execute("select count(*) from items where name like 'invisible-%%'").fetchone()
    assert seen == (1,)  # our own row only: the other workers' transactions are not visible


def test_everyone_shares_one_sandbox(livesandbox, worker_id: str) -> None:
    assert livesandbox.info.backend == "local"
    assert livesandbox.info.endpoint

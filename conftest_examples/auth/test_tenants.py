"""Tenant isolation enforced by the database: real roles, real row-level security policies."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from conftest import bearer


@pytest.mark.db_isolation("database")
def test_tenant_a_cannot_read_tenant_b(live_db, tenant_a, tenant_b) -> None:
    for tenant, body in (("a", "a's plan"), ("b", "b's secret")):
        live_db.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        live_db.execute("INSERT INTO notes (tenant, body) VALUES (%s, %s)", (tenant, body))
    live_db.commit()  # a clone of its own: the roles see what the test committed
    assert tenant_a.conn.execute("SELECT body FROM notes").fetchall() == [("a's plan",)]
    assert tenant_b.conn.execute("SELECT body FROM notes").fetchall() == [("b's secret",)]


def test_a_missing_grant_is_an_error(tenant_a) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        tenant_a.conn.execute("INSERT INTO notes (tenant, body) VALUES ('a', 'x')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        tenant_a.conn.execute("SELECT * FROM accounts")


def test_the_api_shows_each_tenant_only_its_notes(live_http, login) -> None:
    # The app runs its queries as the table's owner: only FORCE ROW LEVEL SECURITY filters them.
    a, b = (login("alice", f"a-{uuid.uuid4().hex[:6]}"), login("bob", f"b-{uuid.uuid4().hex[:6]}"))
    assert live_http.post(
        "/notes", json={"body": "mine"}, headers=bearer(a["access_token"])
    ).is_success
    assert live_http.post(
        "/notes", json={"body": "bob's"}, headers=bearer(b["access_token"])
    ).is_success
    notes = live_http.get("/notes", headers=bearer(a["access_token"])).json()["notes"]
    assert [n["body"] for n in notes] == ["mine"]


def test_the_app_role_has_only_what_it_needs(db_role_audit) -> None:
    audit = db_role_audit()
    assert not audit.superuser and not audit.bypass_rls
    notes = audit.table("notes")
    assert notes.owner and notes.rls and notes.rls_forced  # the policy binds the app itself
    assert notes.rls_applies

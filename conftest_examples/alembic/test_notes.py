"""Each test starts from empty tables: rows the app committed in one test are gone in the next."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("run", [1, 2])
def test_first_note_gets_id_1_every_time(live_http, run):
    # Committed by the app, then truncated after the test (identities restarted).
    response = live_http.post("/notes", json={"title": "groceries", "tags": ["home"]})
    assert response.status_code == 201
    assert response.json() == {"id": 1}
    assert live_http.get("/notes").json() == [{"id": 1, "title": "groceries", "tags": ["home"]}]


def test_duplicate_title_is_a_conflict(live_http):
    assert live_http.post("/notes", json={"title": "a"}).status_code == 201
    assert live_http.post("/notes", json={"title": "a"}).status_code == 409


def test_migrations_ran_once_and_are_kept(live_db):
    # The reset leaves Alembic's bookkeeping alone.
    assert live_db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    assert live_db.execute("SELECT count(*) FROM notes").fetchone() == (0,)


@pytest.mark.db_isolation("database")
def test_cloned_databases_have_the_migrated_schema(live_db):
    # The clone template is taken after the migrations ran: the tables are there, empty.
    live_db.execute("INSERT INTO notes(title) VALUES ('only in this clone')")
    live_db.commit()
    assert live_db.execute("SELECT count(*) FROM notes").fetchone() == (1,)

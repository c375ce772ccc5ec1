"""Inner tests: real roles made, used, refused and dropped (run by tests/plugin/test_auth.py)."""

import os
from pathlib import Path

import psycopg
import pytest

from pytest_livesandbox.errors import RoleError

NAMES = Path(os.environ["ROLE_NAMES_FILE"])


def our_roles(livesandbox):
    with psycopg.connect(livesandbox.info.db.url(admin=True), autocommit=True) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'lsb\\_%'")
        return sorted(r[0] for r in rows)


def note(name):
    with NAMES.open("a") as out:
        out.write(name + "\n")


def test_a_reader_reads_and_may_not_write(live_db_role, live_dsn):
    reader = live_db_role("reader", grants={"items": "SELECT"})
    note(reader.name)
    assert reader.name.startswith("lsb_reader_")
    assert reader.conn.execute("SELECT current_user").fetchone() == (reader.name,)
    assert reader.conn.execute("SELECT count(*) FROM items").fetchone()[0] >= 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.conn.execute("INSERT INTO items (name) VALUES ('x')")
    password = psycopg.conninfo.conninfo_to_dict(reader.dsn)["password"]
    assert password not in repr(reader.dsn) and ":***@" in repr(reader.dsn)
    assert password not in repr(reader)
    assert reader.database == psycopg.conninfo.conninfo_to_dict(live_dsn)["dbname"]


def test_a_failing_test_still_drops_its_role(live_db_role):
    note(live_db_role("doomed").name)
    raise AssertionError("on purpose")


@pytest.mark.db_isolation("database")
def test_a_writer_works_in_the_tests_own_clone(live_db, live_db_role, livesandbox):
    writer = live_db_role("writer", grants={"items": "SELECT, INSERT"}, rls_settings={"app.x": 1})
    note(writer.name)
    assert writer.database == live_db.info.dbname != livesandbox.info.db.dbname
    writer.conn.execute("INSERT INTO items (name) VALUES ('from the role')")
    assert live_db.execute("SELECT name FROM items").fetchall() == [("from the role",)]
    assert writer.conn.execute("SELECT current_setting('app.x')").fetchone() == ("1",)


def test_the_audit_lists_privileges_and_row_security(live_db_role, db_role_audit):
    reader = live_db_role("audited", grants={"items": "SELECT", "accounts": "SELECT, UPDATE"})
    note(reader.name)
    audit = db_role_audit(reader.name)
    assert audit.privileges() == {"items": {"SELECT"}, "accounts": {"SELECT", "UPDATE"}}
    assert not audit.superuser and not audit.table("items").rls
    app = db_role_audit()
    assert app.table("items").owner and {"SELECT", "INSERT"} <= app.table("items").privileges


def test_a_missing_table_is_refused_and_nothing_is_made(live_db_role, livesandbox):
    with pytest.raises(RoleError) as caught:
        live_db_role("x", grants={"nope": "SELECT"})
    assert "test_a_missing_table_is_refused" in str(caught.value)
    assert f"no table 'nope' in database '{livesandbox.info.db.dbname}'" in str(caught.value)
    assert "items" in str(caught.value)  # the tables there are
    assert our_roles(livesandbox) == []


def test_an_unknown_privilege_is_refused(live_db_role, livesandbox):
    with pytest.raises(RoleError, match=r"unknown privilege\(s\) 'SELEKT'; table privileges"):
        live_db_role("x", grants={"items": "SELEKT"})
    assert our_roles(livesandbox) == []


def test_no_role_is_left(livesandbox):
    assert our_roles(livesandbox) == []

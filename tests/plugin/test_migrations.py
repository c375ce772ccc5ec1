"""Migrations before the app, clean data per test, a real Alembic app (local backend)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.conftest import DEMO_APP_CMD, REPO, IsolatedState


def test_alembic_example_migrates_once_and_resets_every_test(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    shutil.copytree(REPO / "conftest_examples" / "alembic", pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--sandbox-report=r.jsonl"
    )
    result.assert_outcomes(passed=5)
    events = [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]
    timings = events[0]["sandbox"]["timings"]
    assert timings["migrate_s"] > 0 and timings["app_ready_s"] > timings["migrate_s"]
    isolated_state.assert_clean()


def test_failed_migration_is_one_clear_error_without_secrets(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        migrate="import os, sys, urllib.parse\n"
        "url = os.environ['DATABASE_URL']\n"
        "open('password.txt', 'w').write(urllib.parse.urlsplit(url).password)\n"
        "print('migrating', url, flush=True)\n"
        "print('boom: relation \"items\" already exists', flush=True)\n"
        "sys.exit(2)\n",
        app="open('app-started', 'w').close()\n",
        test_x="def test_a(live_url):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        "--sandbox-migrate-cmd={python} migrate.py --to 'head revision'",
        f"--sandbox-app-cmd={sys.executable} app.py",
        "--sandbox-report=r.jsonl",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*MigrationFailed: the migration command exited with code 2 (command: "
            f"{sys.executable} migrate.py --to 'head revision').",
            "Last output (full log: */migrate.log):",
            "migrating postgresql://app:***@127.0.0.1:*",
            'boom: relation "items" already exists',
            "Hint: run it yourself with DATABASE_URL set to a scratch database*",
        ]
    )
    password = (pytester.path / "password.txt").read_text()
    output = result.stdout.str() + result.stderr.str() + (pytester.path / "r.jsonl").read_text()
    assert password not in output
    assert not (pytester.path / "app-started").exists()
    isolated_state.assert_clean()


def test_missing_migration_tool_is_not_found(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile("def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        "--sandbox-migrate-cmd=no-such-alembic upgrade head",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*MigrationFailed: the migration command could not start: no-such-alembic: not "
            "found (looked on PATH and in *) (command: no-such-alembic upgrade head).*"
        ]
    )
    isolated_state.assert_clean()


RESET_TESTS = """
import psycopg
import pytest


def commit(dsn, sql):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else None


@pytest.mark.db_reset
def test_1_commits_with_reset(live_dsn):
    commit(live_dsn, "create table if not exists keep_me (v int)")
    commit(live_dsn, "insert into keep_me values (1)")
    assert commit(live_dsn, "insert into items(name) values ('a') returning id") == [(1,)]


def test_2_sees_clean_tables_and_restarted_ids(live_dsn):
    assert commit(live_dsn, "select count(*) from items") == [(0,)]
    assert commit(live_dsn, "select count(*) from keep_me") == [(1,)]  # on the keep list
    # No reset after this one (no marker, --sandbox-db-reset=none): its row stays.
    assert commit(live_dsn, "insert into items(name) values ('b') returning id") == [(1,)]


def test_3_sees_the_unreset_row(live_dsn):
    assert commit(live_dsn, "select name from items") == [("b",)]
"""


def test_db_reset_marker_keep_list_and_none_default(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(RESET_TESTS)
    result = pytester.runpytest_subprocess(
        "--sandbox=local",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
        "--sandbox-db-reset-keep=keep_me",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=3)
    isolated_state.assert_clean()


def test_db_reset_under_xdist_runs_resetting_tests_alone(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    # Every test commits one row, waits and expects to see exactly its own row: a reset of
    # another test running at the same time (or its row) would break that.
    pytester.makepyfile(
        """
        import time

        import psycopg
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_alone(live_dsn, n):
            with psycopg.connect(live_dsn, autocommit=True) as conn:
                conn.execute("insert into items(name) values (%s)", (f"row-{n}",))
                time.sleep(0.2)
                rows = conn.execute("select name from items").fetchall()
            assert rows == [(f"row-{n}",)]
        """
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--sandbox=local",
        f"--sandbox-app-cmd={DEMO_APP_CMD}",
        "--sandbox-db-reset=truncate",
        "--sandbox-report=r.jsonl",
    )
    result.assert_outcomes(passed=6)
    finished = [
        json.loads(line)
        for line in (pytester.path / "r.jsonl").read_text().splitlines()
        if '"test_finished"' in line
    ]
    assert {e["worker"] for e in finished} == {"gw0", "gw1"}
    isolated_state.assert_clean()


def test_db_reset_marker_takes_no_arguments(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.db_reset('items')\ndef test_a(live_db):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("--sandbox=local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*::test_a: @db_reset takes no arguments*"])
    isolated_state.assert_clean()

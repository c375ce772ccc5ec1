"""--sandbox-migrate-cmd on docker: a container of the app's image, before the app starts."""

from __future__ import annotations

import pytest

from tests.conftest import IsolatedState
from tests.integration.docker.conftest import DEMO_APP_IMAGE, DockerScope

MIGRATE_OK = (
    "python3 -c \"import os, psycopg; psycopg.connect(os.environ['DATABASE_URL'], "
    "autocommit=True).execute('create table migrated (v int)')\""
)
MIGRATE_BAD = (
    "python3 -c \"import os, sys, urllib.parse; url = os.environ['DATABASE_URL']; "
    "print('migrating', url, urllib.parse.urlsplit(url).password); sys.exit(3)\""
)


RESET_TESTS = """
import psycopg
import pytest


@pytest.mark.db_reset
def test_1_app_commits(live_http, live_dsn):
    assert live_http.post("/items", json={"name": "kept-by-the-app"}).status_code == 201
    with psycopg.connect(live_dsn) as conn:
        assert conn.execute("select count(*) from items").fetchone() == (1,)


def test_2_tables_are_empty(live_dsn):
    with psycopg.connect(live_dsn) as conn:
        assert conn.execute("select count(*) from items").fetchone() == (0,)
        assert conn.execute("select count(*) from migrated").fetchone() == (0,)
"""


def test_migration_runs_in_the_app_image_and_db_reset_cleans_up(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(RESET_TESTS)
    result = pytester.runpytest_subprocess(
        "--sandbox=docker",
        f"--sandbox-image=app={DEMO_APP_IMAGE}",
        f"--sandbox-migrate-cmd={MIGRATE_OK}",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=2)
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_failed_migration_in_the_image_is_migration_failed_without_secrets(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile("def test_a(live_url):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--sandbox=docker",
        f"--sandbox-image=app={DEMO_APP_IMAGE}",
        f"--sandbox-migrate-cmd={MIGRATE_BAD}",
        "--sandbox-report=r.jsonl",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*MigrationFailed: the migration command exited with code 3 (command: python3 -c*",
            "migrating postgresql://app:***@db:5432/app ***",
        ]
    )
    assert "@db:5432/app ***" in (pytester.path / "r.jsonl").read_text()
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()


def test_migrate_cmd_without_app_image_is_a_usage_error(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    pytester.makepyfile("def test_a(live_db):\n    pass\n")
    result = pytester.runpytest_subprocess("--sandbox=docker", "--sandbox-migrate-cmd=alembic")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--sandbox-migrate-cmd: on docker the migrations run in the app's image*"]
    )
    isolated_state.assert_clean()


def test_database_container_killed_from_outside_errors_the_next_test(
    pytester: pytest.Pytester, isolated_state: IsolatedState, docker_scope: DockerScope
) -> None:
    pytester.makepyfile(
        """
        import docker

        def test_kill(livesandbox):
            name = livesandbox.info.extra["containers"]["db"]
            docker.from_env().containers.get(name).kill()

        def test_next(live_http):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--sandbox=docker", f"--sandbox-image=app={DEMO_APP_IMAGE}", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*SandboxDied: PostgreSQL of sandbox * exited (Exited (137)*",
            "*Hint: something outside the test run stopped it*",
        ]
    )
    assert docker_scope.leftovers() == []
    isolated_state.assert_clean()

"""--sandbox-migrate-cmd on kube: a Job with the app's image before the app's Deployments."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import IsolatedState
from tests.integration.kube.test_kube_backend import POSTGRES, kube_example, only

__all__ = ["kube_example"]  # the fixture, shared with test_kube_backend.py

pytestmark = pytest.mark.kube

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


# kill_db on kube empties the database (a new emptyDir): the migration Job runs again.
KILL_DB_TESTS = """

@pytest.mark.kill_db(when="before", down_for="1s")
def test_3_outage(live_http):
    pass


def test_4_schema_is_back(live_dsn):
    with psycopg.connect(live_dsn) as conn:
        assert conn.execute("select count(*) from migrated").fetchone() == (0,)
"""


def namespaces_with(core: Any, prefix: str) -> list[str]:
    return [
        n.metadata.name for n in core.list_namespace().items if n.metadata.name.startswith(prefix)
    ]


def test_migration_job_runs_before_the_app_again_after_kill_db_and_db_reset_cleans_up(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    prefix = f"migok{uuid.uuid4().hex[:4]}"
    only(kube_example, test_x=RESET_TESTS + KILL_DB_TESTS)
    result = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        POSTGRES,
        f"--sandbox-migrate-cmd={MIGRATE_OK}",
        f"--sandbox-namespace-prefix={prefix}",
        "-p", "no:randomly",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    assert namespaces_with(core, prefix) == []
    isolated_state.assert_clean()


def test_failed_migration_job_is_migration_failed_without_secrets(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    prefix = f"migbad{uuid.uuid4().hex[:4]}"
    only(kube_example, test_x="def test_a(live_url):\n    pass\n")
    result = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        POSTGRES,
        f"--sandbox-migrate-cmd={MIGRATE_BAD}",
        f"--sandbox-namespace-prefix={prefix}",
        "--sandbox-report=r.jsonl",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*MigrationFailed: the migration command exited with code 3 (command: python3 -c*",
            "Last output (full log: kubectl -n * logs job/livesandbox-migrate):",
            "migrating postgresql://app:***@* ***",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert namespaces_with(core, prefix) == []
    isolated_state.assert_clean()


def test_postgres_scaled_away_from_outside_errors_the_next_test(
    kube_example: pytest.Pytester, isolated_state: IsolatedState, core: Any
) -> None:
    prefix = f"health{uuid.uuid4().hex[:4]}"
    only(
        kube_example,
        test_x="""
import os, time

from kubernetes import client, config


def test_scale_db_away(livesandbox):
    api = config.new_client_from_config(os.environ["KUBECONFIG"])
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    ns = livesandbox.info.namespace
    apps.patch_namespaced_stateful_set_scale(
        "livesandbox-postgres", ns, {"spec": {"replicas": 0}}
    )
    while core.list_namespaced_pod(ns, label_selector="livesandbox/role=database").items:
        time.sleep(0.5)


def test_next(live_http):
    pass
""",
    )
    result = kube_example.runpytest_subprocess(
        "-p", "no:cacheprovider",
        POSTGRES,
        f"--sandbox-namespace-prefix={prefix}",
        "-p", "no:randomly",
    )  # fmt: skip
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*SandboxDied: PostgreSQL of sandbox * (namespace *) is not running: no pod.*"]
    )
    assert namespaces_with(core, prefix) == []
    isolated_state.assert_clean()

"""The init container that holds app pods until the sandbox's database takes the app's login."""

from __future__ import annotations

import copy

from pytest_livesandbox.backends.kube import dbwait
from pytest_livesandbox.backends.kube.migrate import migration_job


def deployment(inits: list[dict[str, object]] | None = None) -> dict[str, object]:
    pod: dict[str, object] = {"containers": [{"name": "web", "image": "app:1"}]}
    if inits is not None:
        pod["initContainers"] = inits
    return {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": pod}}}


def test_every_workload_gets_the_wait_first_once_and_keeps_its_own_inits() -> None:
    own = {"name": "seed", "image": "app:1"}
    objs = [deployment([own]), {"kind": "Service", "metadata": {"name": "web"}}, deployment()]
    assert dbwait.add_db_wait(objs, "postgres:15") == 2
    again = copy.deepcopy(objs)
    dbwait.add_db_wait(again, "postgres:15")  # idempotent: one wait container, not two
    assert again == objs
    inits = objs[0]["spec"]["template"]["spec"]["initContainers"]  # type: ignore[index]
    assert [c["name"] for c in inits] == [dbwait.INIT_NAME, "seed"]
    wait = inits[0]
    assert wait["image"] == "postgres:15"
    assert wait["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "livesandbox-db", "key": "url"}
    assert wait["securityContext"]["runAsNonRoot"] and wait["securityContext"]["runAsUser"]
    assert "password" not in " ".join(wait["command"]).lower()


def test_the_migration_job_can_wait_for_the_database_too() -> None:
    job = migration_job([deployment()], ("alembic", "upgrade", "head"), 60)
    dbwait.add_db_wait([job], "postgres:15")
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == [dbwait.INIT_NAME]
    assert [c["name"] for c in pod["containers"]] == ["migrate"]

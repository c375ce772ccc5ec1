"""Rolling a warm kube sandbox to a new build: the patch, what rolls, the reuse key (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_livesandbox.backends import load_backend
from pytest_livesandbox.backends.kube import manifests as mf
from pytest_livesandbox.backends.kube.dbwait import INIT_NAME, add_db_wait
from pytest_livesandbox.backends.kube.rollbuild import plan_roll, rollable
from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.report.stages import stages
from pytest_livesandbox.report.terminal import stage_line
from pytest_livesandbox.reusekey import reuse_key
from tests.conftest import REPO

DEMO = REPO / "examples" / "demo_app" / "k8s"
NEW = "127.0.0.1:5000/x/backend@sha256:" + "b" * 64


def test_the_demo_backend_rolls_with_one_patch_and_no_wait_for_the_database() -> None:
    objs = mf.load_manifests(DEMO)
    (roll,) = plan_roll(objs, [("backend", NEW)])
    assert (roll.kind, roll.name, roll.images, roll.replicas) == (
        "Deployment", "backend", (("backend", NEW),), 1
    )  # fmt: skip
    assert dict(roll.selector) == {
        "app.kubernetes.io/name": "demo-app",
        "app.kubernetes.io/component": "backend",
    }
    body = roll.body()
    pod = body["spec"]["template"]["spec"]
    assert pod["containers"] == [
        {"name": "backend", "image": NEW, "imagePullPolicy": "IfNotPresent"}
    ]
    assert pod["initContainers"] == [{"name": INIT_NAME, "$patch": "delete"}]
    assert body["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "100%",
        "maxUnavailable": "100%",
    }
    # The manifests themselves are not changed; a component that was not rebuilt rolls nothing.
    assert mf.workload_pod_spec(objs[0]) is not None
    assert plan_roll(objs, []) == []
    assert plan_roll(objs, [("worker", NEW)]) == []


def test_a_statefulset_rolls_without_a_strategy_and_a_job_does_not_roll() -> None:
    pod = {"containers": [{"name": "api", "image": "api:dev"}, {"name": "side", "image": "s:1"}]}
    sts = {"kind": "StatefulSet", "metadata": {"name": "api", "labels": {
        "app.kubernetes.io/component": "api"}}, "spec": {"replicas": 2, "selector": {
        "matchLabels": {"app": "api"}}, "template": {"spec": pod}}}  # fmt: skip
    add_db_wait([sts], "postgres:15")
    (roll,) = plan_roll([sts], [("api", NEW)])
    assert roll.images == (("api", NEW),) and roll.replicas == 2  # the sidecar keeps its image
    assert "strategy" not in roll.body()["spec"]
    job = {"kind": "Job", "metadata": {"name": "api"}, "spec": {"template": {"spec": pod}}}
    assert rollable([sts], ["api"]) and not rollable([sts, job], ["api"])
    assert rollable([job], ["other"])  # only the built components' workloads count


def _key(tmp_path: Path, source: str, **extra: str) -> str:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM base\nCOPY app.py /app/\n")
    (tmp_path / "app" / "app.py").write_text(source)
    cli = {
        "backend": "kube",
        "build": ["backend=app"],
        "registry": "127.0.0.1:5000/x",
        "manifests": str(DEMO),  # a wheel install has no demo manifests of its own
        **extra,
    }
    config = SandboxConfig.from_sources(cli=cli, env={}, ini={}, rootdir=tmp_path)
    return reuse_key(config, load_backend(config.backend))


@pytest.mark.parametrize(
    ("backend", "extra", "changed_source_same_key"),
    [
        ("kube", {}, True),  # rolls into the warm namespace
        ("gke", {}, True),
        ("kube", {"migrate_cmd": "alembic upgrade head"}, False),  # its migration runs first
    ],
)
def test_the_reuse_key_has_the_builds_content_only_where_a_build_cannot_roll(
    tmp_path: Path, backend: str, extra: dict[str, str], changed_source_same_key: bool
) -> None:
    extra = {"backend": backend, **extra}
    one, two = _key(tmp_path, "print(1)\n", **extra), _key(tmp_path, "print(2)\n", **extra)
    assert (one == two) is changed_source_same_key


def test_a_reused_runs_stages_show_the_claim_beside_the_build_and_the_roll_last() -> None:
    reused = {"build_s": 0.8, "push_s": 0.1, "attach_s": 0.5, "roll_s": 2.0, "ready_s": 3.0}
    assert stages(reused) == [
        ("build", 0.0, 0.8),
        ("push", 0.8, 0.9),
        ("claim", 0.0, 0.5),
        ("roll", 1.0, 3.0),
    ]
    assert stage_line(reused) == "stages: build 0.80s, push 0.10s, roll 2.00s"


def test_only_the_kube_backends_roll_builds(tmp_path: Path) -> None:
    # docker and local: a changed build is another sandbox (the docker key has the image ids).
    (tmp_path / "app").mkdir()
    cli = {"build": ["backend=app"], "registry": "127.0.0.1:5000/x", "manifests": str(DEMO)}
    config = SandboxConfig.from_sources(cli=cli, env={}, ini={}, rootdir=tmp_path)
    names = ("local", "docker", "kube", "gke")
    rolls = {name: load_backend(name).rolls_builds(config) for name in names}
    assert rolls == {"local": False, "docker": False, "kube": True, "gke": True}

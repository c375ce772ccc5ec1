"""The argocd deployer's pure parts: the Application body, patches, failure text, stages."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_livesandbox.backends.kube import argocd
from pytest_livesandbox.backends.kube.argocd_deploy import deployer_problems
from pytest_livesandbox.config import SandboxConfig
from pytest_livesandbox.preflight import deployer_problem
from pytest_livesandbox.report.stages import stages
from pytest_livesandbox.report.terminal import stage_line

CONFIG = replace(
    SandboxConfig(backend="kube"),
    deployer="argocd",
    git_repo="git://git.example/app.git",
    git_revision="main",
    git_path="k8s",
)
# The status shape Argo CD v3.2.11 wrote on our cluster for the `broken` branch (shortened).
BROKEN: dict[str, Any] = {
    "metadata": {"name": "sandbox-1", "namespace": "argocd"},
    "status": {
        "health": {"status": "Progressing"},
        "sync": {"status": "OutOfSync", "revision": "ba8770f64d09694caeda1776a8cc17c5e5152324"},
        "operationState": {
            "phase": "Failed",
            "message": 'one or more objects failed to apply, reason: ConfigMap "Bad_Name" is '
            "invalid: metadata.name: Invalid value",
            "syncResult": {
                "revision": "ba8770f64d09694caeda1776a8cc17c5e5152324",
                "resources": [
                    {
                        "kind": "ConfigMap",
                        "name": "Bad_Name",
                        "status": "SyncFailed",
                        "message": "metadata.name: Invalid value",
                    },
                    {"kind": "Deployment", "name": "backend", "status": "Synced"},
                ],
            },
        },
        "resources": [
            {"kind": "Service", "name": "backend", "health": {"status": "Healthy"}},
            {
                "kind": "Deployment",
                "name": "backend",
                "health": {"status": "Degraded", "message": "exceeded its progress deadline"},
            },
        ],
    },
}


def test_application_body_requests_a_sync_of_the_revision_with_our_finalizer() -> None:
    patches = argocd.image_patches([("backend", "app:2")])
    body = argocd.application_body("sandbox-1", {"a": "b"}, CONFIG, "sandbox-1", patches)
    assert body["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert body["metadata"]["namespace"] == "argocd" and body["metadata"]["labels"] == {"a": "b"}
    assert body["spec"]["source"] == {
        "repoURL": "git://git.example/app.git",
        "targetRevision": "main",
        "path": "k8s",
        "kustomize": {"patches": patches},
    }
    assert body["spec"]["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "sandbox-1",
    }
    assert body["operation"]["sync"] == {"revision": "main"}
    plain = argocd.application_body("sandbox-1", {}, CONFIG, "sandbox-1", [])
    assert "kustomize" not in plain["spec"]["source"]


def test_image_patches_target_workloads_by_component_label_and_by_name() -> None:
    patches = argocd.image_patches([("backend", "reg/app@sha256:ab")], pull_policy="IfNotPresent")
    kinds = "(Deployment|StatefulSet|DaemonSet)"
    assert [p["target"] for p in patches] == [
        {"kind": kinds, "labelSelector": "app.kubernetes.io/component=backend"},
        {"kind": kinds, "name": "backend"},
    ]
    ops = json.loads(patches[0]["patch"])
    assert ops[0] == {
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": "reg/app@sha256:ab",
    }
    assert ops[1]["path"].endswith("/imagePullPolicy") and ops[1]["value"] == "IfNotPresent"
    assert argocd.image_patches([]) == []


def test_describe_names_the_operation_each_resource_and_the_worst_health() -> None:
    text = argocd.describe(BROKEN)
    assert text.splitlines()[0] == (
        "Argo CD Application argocd/sandbox-1: sync OutOfSync, health Progressing, operation "
        "Failed at revision ba8770f64d09694caeda1776a8cc17c5e5152324"
    )
    assert '  operation: one or more objects failed to apply, reason: ConfigMap "Bad_Name"' in text
    assert "    ConfigMap/Bad_Name: SyncFailed: metadata.name: Invalid value" in text
    assert "    Deployment/backend: Synced" in text
    assert (
        "  worst resource: Deployment/backend health Degraded: exceeded its progress deadline"
        in text
    )
    healthy = {"kind": "Service", "health": {"status": "Healthy"}}
    assert argocd.worst_resource([healthy]) is None
    tree_only = {"metadata": BROKEN["metadata"], "status": {"resourceHealthSource": "appTree"}}
    assert "resourceHealthSource appTree" in argocd.describe(tree_only)


def test_argocd_stages_in_the_timeline_and_the_summary_line() -> None:
    timings = {
        "namespace_s": 1.4,
        "db_ready_s": 5.8,
        "sync_s": 0.6,
        "synced_s": 6.4,
        "healthy_s": 8.3,
        "app_ready_s": 8.7,
    }
    assert stages(timings) == [
        ("namespace", 0.0, 1.4),
        ("db", 1.4, 5.8),
        ("sync", 5.8, 6.4),
        ("healthy", 6.4, 8.3),
        ("app", 8.3, 8.7),
    ]
    assert stage_line(timings) == (
        "stages: sync 0.60s; ready at: namespace 1.40s, db 5.80s, synced 6.40s, "
        "healthy 8.30s, app 8.70s"
    )


def test_deployer_settings_are_checked_without_a_cluster(tmp_path: Path) -> None:
    assert deployer_problems(CONFIG) == []
    assert deployer_problems(replace(CONFIG, deployer="apply", git_repo=None)) == []
    missing = deployer_problems(replace(CONFIG, git_repo=None))
    assert len(missing) == 1 and missing[0].startswith("--sandbox-deployer=argocd needs")
    refused = deployer_problems(
        replace(CONFIG, manifests=tmp_path, migrate_cmd=("alembic",), reuse=True)
    )
    assert [p.split(" with ")[0] for p in refused] == [
        "--sandbox-manifests",
        "--sandbox-migrate-cmd",
        "--sandbox-reuse",
    ]
    assert deployer_problems(replace(CONFIG, git_repo=None, attach="sandbox-1")) == []
    assert deployer_problem(CONFIG, ("apply", "argocd")) == ""
    assert "backend 'kube' deploys with apply only" in deployer_problem(CONFIG, ("apply",))

"""Pure parts of the kube and gke backends: names, safety rules, manifests, diagnosis, gcloud."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import pytest
from kubernetes import client

from pytest_livesandbox.backends.gke.backend import GkeCluster, credentials_command, credentials_env
from pytest_livesandbox.backends.kube import diagnose
from pytest_livesandbox.backends.kube import manifests as mf
from pytest_livesandbox.backends.kube import postgres as pg
from pytest_livesandbox.backends.kube.client import missing_exec_plugin
from pytest_livesandbox.backends.kube.names import (
    check_context_allowed,
    expires_at,
    label_value,
    looks_like_production,
    namespace_name,
    parse_expires_at,
    render_url_template,
    sandbox_labels,
)
from pytest_livesandbox.backends.kube.namespace import guard_rails
from pytest_livesandbox.backends.kube.postgres import external_database
from pytest_livesandbox.errors import ConfigError, UnsafeTarget


@pytest.mark.parametrize(
    ("context", "server", "production"),
    [
        ("livesandbox", "https://127.0.0.1:6443", False),
        ("kind-dev", "https://127.0.0.1:40000", False),
        ("product-demo", "https://10.0.0.1", False),
        ("gke_acme_europe-west1_prod", "https://34.1.2.3", True),
        ("payments-production", "https://10.0.0.1", True),
        ("staging", "https://api.prod.example.com", True),
        ("eks-live", "https://x", True),
        ("arn:aws:eks:eu-west-1:1:cluster/prd", "https://x", True),
    ],
)
def test_production_looking_contexts(context: str, server: str, production: bool) -> None:
    assert looks_like_production(context, server) is production


def test_production_context_is_refused_with_the_way_to_allow_it() -> None:
    with pytest.raises(UnsafeTarget) as info:
        check_context_allowed("gke_acme_europe-west1_prod", "https://34.1.2.3", None)
    assert "--sandbox-allow-context '^gke_acme_europe\\-west1_prod$'" in str(info.value)
    check_context_allowed("gke_acme_europe-west1_prod", "https://34.1.2.3", "_prod$")
    check_context_allowed("livesandbox", "https://127.0.0.1:6443", None)
    with pytest.raises(UnsafeTarget):
        check_context_allowed("prod", "https://x", "^staging$")
    with pytest.raises(ConfigError, match="is not a regex"):
        check_context_allowed("prod", "https://x", "(")


def test_names_and_labels() -> None:
    assert namespace_name("sandbox", "3f9c2a1b") == "sandbox-3f9c2a1b"
    with pytest.raises(ConfigError, match="namespace-prefix"):
        namespace_name("Sandbox_", "3f9c2a1b")
    with pytest.raises(ConfigError):
        namespace_name("x" * 60, "3f9c2a1b")
    assert label_value("root@ci-runner.example.com") == "root_ci-runner.example.com"
    assert label_value("-" + "a" * 80) == "a" * 62
    labels = sandbox_labels("ab12", "run1", "me@host", git_sha="0123456789" * 5)
    assert labels["app.kubernetes.io/managed-by"] == "pytest-livesandbox"
    assert labels["livesandbox/owner"] == "me_host"
    assert len(labels["livesandbox/git-sha"]) == 40


def test_expiry_annotation_round_trips() -> None:
    now = 1_800_000_000.0
    stamp = expires_at(7200, now=now)
    assert stamp == "2027-01-15T10:00:00Z"
    assert parse_expires_at(stamp) == now + 7200
    assert parse_expires_at("tomorrow") is None


def test_url_template() -> None:
    url = render_url_template(
        "https://sandbox-{id}.dev.example.com/", sandbox_id="3f9c", namespace="n", run_id="r"
    )
    assert url == "https://sandbox-3f9c.dev.example.com"
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \{domain\}"):
        render_url_template(
            "https://sandbox-{id}.{domain}", sandbox_id="a", namespace="n", run_id="r"
        )
    with pytest.raises(ConfigError, match="must start with http"):
        render_url_template("sandbox-{id}.example.com", sandbox_id="a", namespace="n", run_id="r")


def test_guard_rails_fence_the_database_and_open_the_app() -> None:
    kinds = [obj["kind"] for obj in guard_rails()]
    assert kinds == ["ResourceQuota", "LimitRange"] + ["NetworkPolicy"] * 3
    deny, db, app = guard_rails()[2:]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert db["spec"]["podSelector"]["matchLabels"] == {"livesandbox/role": "database"}
    assert db["spec"]["ingress"][0]["ports"] == [{"port": 5432}]
    assert app["spec"]["podSelector"]["matchExpressions"][0]["operator"] == "NotIn"
    statefulset = pg.postgres_objects("postgres:15", "pw")[2]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["livesandbox/role"] == "database"


# The repository's copy, not the package's DEMO_MANIFESTS: a wheel does not ship examples/.
DEMO_MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "demo_app" / "k8s"


def test_demo_manifests_load_override_and_point_at_the_service() -> None:
    objs = mf.load_manifests(DEMO_MANIFESTS)
    assert sorted(o["kind"] for o in objs) == ["Deployment", "Service"]
    assert mf.override_images(objs, [("backend", "myapp:2"), ("worker", "x")]) == {"backend"}
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "myapp:2"
    selector, port, workload = mf.endpoint_target(objs) or ("", 0, None)
    assert selector == "app.kubernetes.io/component=backend,app.kubernetes.io/name=demo-app"
    assert port == 8000 and workload == ("Deployment", "backend")
    assert mf.workloads(objs) == [("Deployment", "backend")]
    assert mf.known_components(objs) == ["backend"]


def test_image_override_by_workload_name_picks_the_named_container() -> None:
    two = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "api"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "proxy", "image": "envoy"},
                        {"name": "api", "image": "old"},
                    ]
                }
            }
        },
    }
    objs = [copy.deepcopy(two)]
    assert mf.override_images(objs, [("api", "new")]) == {"api"}
    images = [c["image"] for c in objs[0]["spec"]["template"]["spec"]["containers"]]
    assert images == ["envoy", "new"]


def test_manifests_are_pinned_into_the_namespace_and_cluster_objects_refused() -> None:
    objs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}}]
    mf.check_namespaced(objs, "sandbox-1")
    assert objs[0]["metadata"]["namespace"] == "sandbox-1"
    with pytest.raises(ConfigError, match="ClusterRole 'admin' is cluster-scoped"):
        mf.check_namespaced(
            [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
              "metadata": {"name": "admin"}}],
            "sandbox-1",
        )  # fmt: skip


def test_placeholders_are_filled_everywhere() -> None:
    obj = {"spec": {"rules": [{"host": "${LIVESANDBOX_HOST}"}], "n": 1, "keep": "${OTHER}"}}
    done = mf.substitute(obj, {"LIVESANDBOX_HOST": "sandbox-1.example.com"})
    assert done == {
        "spec": {"rules": [{"host": "sandbox-1.example.com"}], "n": 1, "keep": "${OTHER}"}
    }


def test_kustomization_without_kustomize_reads_its_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # neither kubectl nor kustomize
    (tmp_path / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: List\n"
        "items:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    assert [o["kind"] for o in mf.load_manifests(tmp_path)] == ["ConfigMap", "Secret"]
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\npatches: []\n")
    with pytest.raises(ConfigError, match="uses patches, which needs kustomize"):
        mf.load_manifests(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        mf.load_manifests(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        mf.load_manifests(tmp_path / "bad")


def _pod(**status: object) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="backend-1", namespace="ns"),
        status=client.V1PodStatus(**status),  # type: ignore[arg-type]
    )


def _container(state: client.V1ContainerState, **kw: object) -> client.V1ContainerStatus:
    return client.V1ContainerStatus(
        name="backend", image="x", image_id="", ready=False, restart_count=kw.pop("restarts", 0),
        state=state, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_fatal_pod_states_are_recognised() -> None:
    never = client.V1ContainerStateWaiting(
        reason="ErrImageNeverPull", message='Container image "x" is not present'
    )
    failure = diagnose.pod_failure(
        _pod(
            phase="Pending", container_statuses=[_container(client.V1ContainerState(waiting=never))]
        )
    )
    assert failure == (
        "image",
        'container backend: ErrImageNeverPull: Container image "x" is not present',
    )

    crashed = client.V1ContainerStateTerminated(exit_code=3, reason="Error")
    backoff = client.V1ContainerStateWaiting(reason="CrashLoopBackOff", message="back-off")
    status = _container(
        client.V1ContainerState(waiting=backoff),
        restarts=2,
        last_state=client.V1ContainerState(terminated=crashed),
    )
    assert diagnose.pod_failure(_pod(phase="Running", container_statuses=[status])) == (
        "crash",
        "container backend exited with code 3 (Error)",
    )
    oom = client.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
    status = _container(client.V1ContainerState(terminated=oom))
    assert diagnose.pod_failure(_pod(phase="Running", container_statuses=[status])) == (
        "oom",
        "container backend was OOMKilled (exit code 137)",
    )
    pulling = client.V1ContainerStateWaiting(reason="ErrImagePull", message="timeout")
    slow = _pod(
        phase="Pending", container_statuses=[_container(client.V1ContainerState(waiting=pulling))]
    )
    assert diagnose.pod_failure(slow, slow_ok=True) is None
    assert diagnose.pod_failure(slow, slow_ok=False) == (
        "image",
        "container backend: ErrImagePull: timeout",
    )
    running = client.V1ContainerState(running=client.V1ContainerStateRunning())
    assert (
        diagnose.pod_failure(_pod(phase="Running", container_statuses=[_container(running)]))
        is None
    )


def test_unschedulable_pods_are_described() -> None:
    cond = client.V1PodCondition(
        type="PodScheduled", status="False", reason="Unschedulable",
        message="0/1 nodes are available: 1 Insufficient memory.",
    )  # fmt: skip
    pod = _pod(phase="Pending", conditions=[cond])
    assert diagnose.describe_pod(pod) == [
        "pod backend-1 (Pending)",
        "  not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.",
    ]
    assert diagnose.scrub("password=s3cr3tvalue in log", ["s3cr3tvalue"]) == "password=*** in log"


def test_gke_cluster_and_credentials_command() -> None:
    cluster = GkeCluster.parse("acme-dev/europe-west1-b/sandbox")
    assert cluster.context == "gke_acme-dev_europe-west1-b_sandbox"
    assert credentials_command(cluster, "/usr/bin/gcloud") == [
        "/usr/bin/gcloud", "container", "clusters", "get-credentials", "sandbox",
        "--project", "acme-dev", "--location", "europe-west1-b",
    ]  # fmt: skip
    env = credentials_env(Path("/tmp/k"), {"PATH": "/bin", "KUBECONFIG": "/home/me/.kube/config"})
    assert env == {
        "PATH": "/bin",
        "KUBECONFIG": "/tmp/k",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "USE_GKE_GCLOUD_AUTH_PLUGIN": "True",
    }
    for bad in ("acme/sandbox", "acme//x", "Acme/europe-west1/x y"):
        with pytest.raises(ConfigError, match="PROJECT/LOCATION/NAME"):
            GkeCluster.parse(bad)


def test_missing_exec_plugin_is_named(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "contexts:\n- name: gke\n  context: {cluster: c, user: u}\n"
        "users:\n- name: u\n  user:\n    exec: {command: no-such-auth-plugin-xyz}\n"
        "- name: v\n  user:\n    exec: {command: sh}\n"
    )
    assert missing_exec_plugin([kubeconfig], "gke") == "no-such-auth-plugin-xyz"
    kubeconfig.write_text(kubeconfig.read_text().replace("user: u}", "user: v}"))
    assert missing_exec_plugin([kubeconfig], "gke") is None


def test_external_dsn() -> None:
    db = external_database("postgresql://svc:pw@db.internal:6432/orders")
    assert (db.host, db.port, db.dbname, db.user, db.admin_user) == (
        "db.internal", 6432, "orders", "svc", "svc",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--sandbox-db-dsn"):
        external_database("host=a port=notanumber =")


def test_expired_is_relative_to_now() -> None:
    from pytest_livesandbox.backends.kube.namespace import NamespaceRecord

    past = NamespaceRecord("n", "i", "o", "r", time.time() - 10, time.time() - 1, "Active")
    assert past.expired and past.age >= 10
    assert not NamespaceRecord("n", "i", "o", "r", time.time(), None, "Active").expired


def test_library_errors_during_bring_up_become_ours() -> None:
    from kubernetes.client import ApiException

    from pytest_livesandbox.backends.kube.diagnose import api_error
    from pytest_livesandbox.errors import ClusterUnreachable, ProvisionError
    from pytest_livesandbox.info import SandboxInfo

    info = SandboxInfo(
        "i", "kube", "r", "o", 0.0, extra={"server": "https://k:6443", "context": "c"}
    )
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = '{"message": "namespaces is forbidden: User \\"dev\\" cannot create"}'
    err = api_error(forbidden, info)
    assert isinstance(err, ClusterUnreachable)
    assert 'namespaces is forbidden: User \\"dev\\" cannot create' in str(err)
    assert type(api_error(ApiException(status=409, reason="Conflict"), info)) is ProvisionError
    lost = api_error(ConnectionRefusedError("refused"), info)
    assert isinstance(lost, ClusterUnreachable) and "https://k:6443 (context 'c')" in str(lost)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl on PATH")
def test_kustomization_with_more_than_resources_is_built_by_kubectl(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: x-\n")
    assert [o["metadata"]["name"] for o in mf.load_manifests(tmp_path)] == ["x-a"]

"""Leases and warm namespaces (``--sandbox-reuse``) on the real cluster."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes.client import ApiException

from pytest_livesandbox.backends.kube.names import REUSE_KEY_LABEL, sandbox_labels
from pytest_livesandbox.backends.kube.namespace import delete_namespace, namespace_body
from pytest_livesandbox.backends.kube.warm import APP_FORWARD, claim_namespace
from pytest_livesandbox.lease import Lease
from tests.conftest import REPO, IsolatedState, changed_demo_app

pytestmark = pytest.mark.kube

CLEAN_DB_TEST = """
import json

def test_clean_then_write(livesandbox, live_http, live_db):
    assert live_db.execute("select count(*) from items").fetchone()[0] == 0
    assert live_http.post("/items", json={"name": "only-once"}).status_code == 201
    with open("ids.txt", "a") as out:
        out.write(json.dumps({"ns": livesandbox.info.namespace,
                              "reused": livesandbox.info.extra.get("reused")}) + "\\n")
"""


@pytest.fixture
def owner(monkeypatch: pytest.MonkeyPatch) -> str:
    """A private owner for the inner runs (their namespaces' owner label), for scoped gc."""
    tag = f"i16-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BUILD_TAG", tag)
    return f"build_tag-{tag}"


@pytest.fixture
def kube_dir(pytester: pytest.Pytester, kube_client: Any, owner: str) -> pytest.Pytester:
    """pytester folder with the kube example's pytest.ini (manifests path made absolute)."""
    shutil.copy(REPO / "conftest_examples" / "kube" / "pytest.ini", pytester.path)
    ini = pytester.path / "pytest.ini"
    manifests = REPO / "examples" / "demo_app" / "k8s"
    ini.write_text(ini.read_text().replace("../../examples/demo_app/k8s", str(manifests)))
    return pytester


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def namespace_exists(core: Any, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_second_run_claims_the_warm_namespace_with_a_clean_database(
    kube_dir: pytest.Pytester, isolated_state: IsolatedState, core: Any, owner: str
) -> None:
    kube_dir.makepyfile(test_clean=CLEAN_DB_TEST)
    opts = ("-p", "no:cacheprovider", "--sandbox-reuse", "--sandbox-namespace-prefix=reuse")
    try:
        kube_dir.runpytest_subprocess(*opts).assert_outcomes(passed=1)
        ls = cli("ls", "--backend", "kube", "--owner", owner).stdout
        assert " warm " in ls, ls
        (first_ns,) = (json.loads(line)["ns"] for line in (kube_dir.path / "ids.txt").open())
        annotations = core.read_namespace(first_ns).metadata.annotations
        assert json.loads(annotations[APP_FORWARD])[1], annotations  # the claim's short attach
        second = kube_dir.runpytest_subprocess(*opts, "--sandbox-report=r.jsonl")
        second.assert_outcomes(passed=1)
        second.stdout.fnmatch_lines(["*(kube) reused, ready in *"])
    finally:
        for line in cli("ls", "--backend", "kube", "--owner", owner).stdout.splitlines()[1:]:
            cli("down", line.split()[0])
    lines = (kube_dir.path / "ids.txt").read_text().splitlines()
    one, two = (json.loads(line) for line in lines)
    assert one["reused"] is False and two == {"ns": one["ns"], "reused": True}
    started = json.loads((kube_dir.path / "r.jsonl").read_text().splitlines()[0])
    assert started["reused"] is True
    assert not namespace_exists(core, one["ns"])
    isolated_state.assert_clean()


def test_concurrent_claims_of_one_warm_namespace_have_one_winner(core: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    name, key = f"sandbox-claim-{suffix}", f"k{suffix}"
    labels = {**sandbox_labels(suffix, "r0", f"claim-test-{suffix}"), REUSE_KEY_LABEL: key}
    core.create_namespace(
        namespace_body(name, labels, ttl=600, lease=Lease("warm", "", time.time() + 600))
    )
    winners: list[str] = []
    start = threading.Barrier(4)

    def contend(run_id: str) -> None:
        start.wait()
        if claim_namespace(core, key, "kube", run_id, time.time() + 60) is not None:
            winners.append(run_id)

    try:
        threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(winners) == 1, winners
        holder = core.read_namespace(name).metadata.annotations["livesandbox/lease-holder"]
        assert holder == winners[0]
        assert claim_namespace(core, key, "kube", "late", time.time() + 60) is None
    finally:
        delete_namespace(core, name, sandbox_id=suffix)


def test_a_killed_runs_namespace_is_reaped_by_gc_soon_after_its_lease_lapses(
    kube_dir: pytest.Pytester, isolated_state: IsolatedState, core: Any, owner: str
) -> None:
    kube_dir.makepyfile(
        test_hang="""
        import time

        def test_hang(livesandbox, live_url):
            open("ns", "w").write(livesandbox.info.namespace)
            time.sleep(300)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--sandbox-lease=4s"],
        cwd=kube_dir.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ns_file = kube_dir.path / "ns"
    deadline = time.monotonic() + 150
    while not ns_file.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    namespace = ns_file.read_text()
    time.sleep(2)
    ls = cli("ls", "--backend", "kube", "--owner", owner).stdout
    assert " running " in ls and namespace in ls, ls  # leased: gc leaves it alone
    assert "0 sandbox(es) removed" in cli("gc", "--backend", "kube", "--owner", owner).stdout
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    lapse_by = killed_at + 4 + 1  # lease length, plus the annotation's whole-second rounding
    while namespace_exists(core, namespace):
        assert time.time() - lapse_by < 10, "not reaped within 10 s of its lease lapsing"
        gc = cli("gc", "--backend", "kube", "--owner", owner)
        if "(kube, lapsed)" in gc.stdout:
            break
        time.sleep(0.5)
    assert not namespace_exists(core, namespace) or "removing" in gc.stdout
    isolated_state.assert_clean()


def test_the_pool_hands_out_distinct_namespaces_to_concurrent_claims(
    kube_dir: pytest.Pytester, isolated_state: IsolatedState, core: Any, owner: str
) -> None:
    from pytest_livesandbox.backends import load_backend
    from pytest_livesandbox.pool import config_from
    from pytest_livesandbox.reuse import reuse_key

    args = ["--sandbox-namespace-prefix=pool"]
    try:
        warm = cli("warm", "--count", "2", "--rootdir", str(kube_dir.path), "--", *args)
        assert warm.returncode == 0, warm.stdout + warm.stderr
        assert "2 warm sandbox(es)" in warm.stdout
        key = reuse_key(config_from(args, kube_dir.path), load_backend("kube"))
        got: list[str] = []
        start = threading.Barrier(3)

        def contend(run_id: str) -> None:
            start.wait()
            ns = claim_namespace(core, key, "kube", run_id, time.time() + 60)
            if ns is not None:
                got.append(ns.name)

        threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got) == 2 and len(set(got)) == 2, got  # the third found none left
    finally:
        for line in cli("ls", "--backend", "kube", "--owner", owner).stdout.splitlines()[1:]:
            cli("down", line.split()[0])
    isolated_state.assert_clean()


ROLLED_TEST = """
import json
import os

from kubernetes import client, config


def test_new_build_on_clean_data(livesandbox, live_http, live_db):
    assert live_http.get("/healthz").json()["build"] == open("marker.txt").read()
    assert live_db.execute("select count(*) from items").fetchone()[0] == 0
    assert live_http.post("/items", json={"name": "only-once"}).status_code == 201
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    ns = livesandbox.info.namespace
    pods = client.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=backend"
    ).items
    with open("runs.txt", "a") as out:
        out.write(json.dumps({
            "ns": ns,
            "reused": livesandbox.info.extra.get("reused"),
            "rolled": livesandbox.info.extra.get("app_rolled"),
            "digest": livesandbox.info.extra["digests"]["backend"],
            "pod_images": sorted(c.image for p in pods for c in p.spec.containers),
            "pod_inits": sorted(c.name for p in pods for c in p.spec.init_containers or []),
        }) + "\\n")
"""


def test_a_changed_build_rolls_into_the_warm_namespace_and_an_unchanged_one_does_not(
    kube_dir: pytest.Pytester,
    isolated_state: IsolatedState,
    core: Any,
    owner: str,
    registry_addr: str,
) -> None:
    app = kube_dir.path / "app"
    kube_dir.makepyfile(test_rolled=ROLLED_TEST)
    opts = (
        "-p", "no:cacheprovider", "--sandbox-reuse", "--sandbox-namespace-prefix=roll",
        f"--sandbox-build=backend={app}",
        f"--sandbox-build-arg=BASE={registry_addr}/livesandbox/python-psycopg:bookworm",
        f"--sandbox-registry={registry_addr}/lsbtest", "--sandbox-report=r.jsonl",
    )  # fmt: skip
    markers = [f"r{uuid.uuid4().hex[:10]}" for _ in range(2)]
    outputs = []
    try:
        for marker in (markers[0], markers[1], markers[1]):  # new, changed, unchanged
            changed_demo_app(app, marker)
            (kube_dir.path / "marker.txt").write_text(marker)
            run = kube_dir.runpytest_subprocess(*opts)
            run.assert_outcomes(passed=1)
            outputs.append(str(run.stdout))
            sandbox = json.loads((kube_dir.path / "r.jsonl").read_text().splitlines()[0])
            outputs.append(json.dumps(sandbox["sandbox"]))
    finally:
        for line in cli("ls", "--backend", "kube", "--owner", owner).stdout.splitlines()[1:]:
            cli("down", line.split()[0])
    first, changed, unchanged = (
        json.loads(line) for line in (kube_dir.path / "runs.txt").read_text().splitlines()
    )
    assert first["reused"] is False and first["pod_inits"] == ["livesandbox-wait-db"]
    # One namespace throughout: the changed build rolled in, its pods only, no wait for the db.
    assert changed["ns"] == unchanged["ns"] == first["ns"]
    assert changed["reused"] is True and changed["rolled"] == ["Deployment/backend"]
    assert changed["digest"] != first["digest"]
    assert changed["pod_images"] == [changed["digest"]] and changed["pod_inits"] == []
    assert "rolled to the new build: Deployment/backend" in outputs[2]
    assert "roll " in outputs[2] and '"roll_s"' in outputs[3]
    # Unchanged: neither built, pushed nor rolled.
    assert unchanged["reused"] is True and unchanged["rolled"] is None
    assert unchanged["digest"] == changed["digest"]
    assert '"built": false' in outputs[5] and '"pushed": false' in outputs[5]
    assert not namespace_exists(core, first["ns"])
    isolated_state.assert_clean()
    for digest in {first["digest"], changed["digest"]}:  # the engine's copies of the builds
        subprocess.run(["docker", "rmi", digest], capture_output=True)

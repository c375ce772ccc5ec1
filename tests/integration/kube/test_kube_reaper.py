"""The in-cluster reaper (`livesandbox reaper install`) on the real cluster, our own image."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from pytest_livesandbox.backends.kube.names import OWNER_LABEL, sandbox_labels
from pytest_livesandbox.backends.kube.namespace import namespace_body
from pytest_livesandbox.lease import Lease

pytestmark = pytest.mark.kube


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_livesandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def phase(core: Any, name: str) -> str:
    try:
        return str(core.read_namespace(name).status.phase)
    except ApiException as exc:
        if exc.status == 404:
            return "Gone"
        raise


def test_the_reaper_job_deletes_lapsed_namespaces_and_nothing_else(
    core: Any, kube_client: Any
) -> None:
    suffix = uuid.uuid4().hex[:8]
    home, owner = f"lsreaper-{suffix}", f"reaper-test-{suffix}"
    lapsed, leased, foreign = (f"sandbox-{kind}-{suffix}" for kind in ("lapsed", "leased", "x"))
    now = time.time()
    labels = sandbox_labels(suffix, "r", owner)
    core.create_namespace(namespace_body(lapsed, labels, 600, Lease("held", "r", now - 5)))
    other = {**sandbox_labels(f"{suffix}b", "r", owner)}
    core.create_namespace(namespace_body(leased, other, 600, Lease("held", "r", now + 600)))
    core.create_namespace(
        namespace_body(foreign, {"team": "x", OWNER_LABEL: owner}, -60, Lease("held", "r", 0))
    )
    try:
        install = cli(
            "reaper",
            "install",
            "--backend",
            "kube",
            "--namespace",
            home,
            "--suspend",
            "--selector",
            f"{OWNER_LABEL}={owner}",
        )
        assert install.returncode == 0, install.stderr
        assert "applied CronJob/reaper" in install.stdout
        batch = client.BatchV1Api(kube_client)
        cron = batch.read_namespaced_cron_job("reaper", home)
        rules = client.RbacAuthorizationV1Api(kube_client).read_cluster_role(f"{home}-reaper").rules
        assert [(r.resources, sorted(r.verbs)) for r in rules] == [
            (["namespaces"], ["delete", "list"])
        ]
        job = {
            "metadata": {"name": f"now-{suffix}"},
            "spec": kube_client.sanitize_for_serialization(cron.spec.job_template.spec),
        }
        batch.create_namespaced_job(home, job)
        deadline = time.monotonic() + 90
        while not (batch.read_namespaced_job(f"now-{suffix}", home).status.succeeded or 0):
            failed = batch.read_namespaced_job(f"now-{suffix}", home).status.failed or 0
            assert not failed and time.monotonic() < deadline, "the reaper job did not succeed"
            time.sleep(1)
        assert phase(core, lapsed) in ("Terminating", "Gone")
        assert phase(core, leased) == "Active" and phase(core, foreign) == "Active"
        # RBAC cannot filter by label; the admission policy does: the reaper's identity may not
        # delete a namespace that is not ours, whatever its annotations say.
        as_reaper = client.ApiClient(
            kube_client.configuration,
            header_name="Impersonate-User",
            header_value=f"system:serviceaccount:{home}:reaper",
        )
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_reaper).delete_namespace(foreign)
        assert denied.value.status in (403, 422) and "pytest-livesandbox" in str(denied.value.body)
    finally:
        cli("reaper", "uninstall", "--backend", "kube", "--namespace", home)
        for name in (lapsed, leased, foreign):
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
    assert phase(core, home) in ("Terminating", "Gone")

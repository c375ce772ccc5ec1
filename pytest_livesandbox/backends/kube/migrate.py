"""``--sandbox-migrate-cmd`` on kube: a Job with the app's image, run before the app rolls out.

The Job's one container copies the first app workload's first container (image, ``env``,
``envFrom``, resources), so the migration sees the same ``DATABASE_URL`` the app will (Secret
``livesandbox-db``, key ``url``, added if the app takes it another way) and the namespace's
LimitRange and quota treat it like the app::

    job = migration_job(objs, ("alembic", "upgrade", "head"), deadline_s=60)
    code, logs = run_job(target, namespace, job, timeout=60)

``backoffLimit: 0``: a failed migration is reported, not retried. :func:`run_migration` does
both and raises :class:`~pytest_livesandbox.errors.MigrationFailed`.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from ...errors import ConfigError
from ...info import MANAGED_BY
from ...postgres.migrate import migration_failed
from . import manifests as mf
from .clock import CLOCK_ENV
from .dbwait import INIT_NAME, add_db_wait
from .names import MANAGED_BY_LABEL
from .postgres import APP_SECRET
from .postgres import NAME as PG_SERVICE

JOB_NAME = "livesandbox-migrate"
_POLL_S = 0.25
_STUCK_S = 15.0


def run_migration(
    target: Any,
    namespace: str,
    objs: list[dict[str, Any]],
    cmd: tuple[str, ...],
    deadline: float,
    extra: dict[str, Any],
) -> float:
    """Run ``cmd`` as the migration Job before the app's objects exist; return the seconds taken.

    :func:`start_migration` then :func:`finish_migration`, one after the other.
    """
    started = start_migration(target, namespace, objs, cmd, deadline, extra)
    return finish_migration(started, deadline)


@dataclass
class StartedMigration:
    """A migration Job created (:func:`start_migration`), not yet waited for."""

    target: Any
    namespace: str
    job: dict[str, Any]
    cmd: tuple[str, ...]
    began: float


def start_migration(
    target: Any,
    namespace: str,
    objs: list[dict[str, Any]],
    cmd: tuple[str, ...],
    deadline: float,
    extra: dict[str, Any],
    *,
    wait_image: str | None = None,
) -> StartedMigration:
    """Create the migration Job with the app's image; do not wait for it.

    ``{python}`` (this interpreter's path) becomes ``python3`` inside the image. The Job's
    manifest (no secret in it: ``DATABASE_URL`` comes from the Secret) is kept in ``extra`` as
    ``migrate_job``, so a ``kill_db`` that empties the database can migrate it again. With
    ``wait_image`` (the sandbox's PostgreSQL image) the Job is made while PostgreSQL still
    starts: its pod waits in :mod:`.dbwait`'s init container until the app role logs in;
    without it the Job is made once the database Service routes.
    """
    began = time.monotonic()
    cmd = tuple("python3" if part == sys.executable else part for part in cmd)
    job = migration_job(objs, cmd, max(deadline - time.monotonic(), 1.0))
    if wait_image is not None:
        add_db_wait([job], wait_image)
    extra["migrate_job"] = job
    if wait_image is None:
        _await_db_service(target, namespace, deadline)
    k8s.BatchV1Api(target.api).create_namespaced_job(namespace, job)
    return StartedMigration(target, namespace, job, cmd, began)


def finish_migration(started: StartedMigration, deadline: float) -> float:
    """Wait for the Job of :func:`start_migration`; the seconds since it started.

    A run that could not connect (``OperationalError``: the path to a server that just became
    Ready, Service or fault proxy pod, may lag it by a moment) is tried again, as after a
    kill_db; any other failure raises :class:`~pytest_livesandbox.errors.MigrationFailed`.
    """
    target, namespace, job, began = started.target, started.namespace, started.job, started.began
    code, logs, why = await_job(target, namespace, max(deadline - time.monotonic(), 1.0))
    if code != 0 and "OperationalError" in logs:
        again = rerun_migration(target, namespace, job, max(deadline - time.monotonic(), 1.0))
        if not again:
            return round(time.monotonic() - began, 4)
    if code != 0:
        last = "\n".join(logs.splitlines()[-20:])
        raise migration_failed(
            started.cmd, why, last, f"kubectl -n {namespace} logs job/{JOB_NAME}"
        )
    return round(time.monotonic() - began, 4)


def rerun_migration(target: Any, namespace: str, job: Any, timeout: float) -> str:
    """Run the migration Job again after a ``kill_db``; ``""`` or why it failed.

    The path to the new server (Service, fault proxy) may lag its start by a moment: a run
    that could not connect is tried again, up to three times.
    """
    deadline = time.monotonic() + timeout
    why = ""
    for _ in range(3):
        why = _rerun_once(target, namespace, job, deadline)
        if not why or "OperationalError" not in why:
            return why
        time.sleep(1.0)
    return why


def _rerun_once(target: Any, namespace: str, job: Any, deadline: float) -> str:
    batch = k8s.BatchV1Api(target.api)
    try:
        batch.delete_namespaced_job(JOB_NAME, namespace, propagation_policy="Foreground")
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise
    while time.monotonic() < deadline:
        try:
            batch.read_namespaced_job(JOB_NAME, namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                break
            raise
        time.sleep(_POLL_S)
    code, logs, why = run_job(target, namespace, job, max(deadline - time.monotonic(), 1.0))
    if code == 0:
        return ""
    return f"the migration Job {why}: {' | '.join(logs.splitlines()[-3:])}"


def migration_job(objs: list[dict[str, Any]], cmd: tuple[str, ...], deadline_s: float) -> Any:
    """The Job manifest running ``cmd`` in the image of the first app workload.

    >>> web = {"name": "web", "image": "app:1"}
    >>> deploy = {"kind": "Deployment", "metadata": {"name": "web"},
    ...           "spec": {"template": {"spec": {"containers": [web]}}}}
    >>> job = migration_job([deploy], ("alembic", "upgrade", "head"), 60)
    >>> container = job["spec"]["template"]["spec"]["containers"][0]
    >>> container["image"], container["command"], container["env"][0]["name"]
    ('app:1', ['alembic', 'upgrade', 'head'], 'DATABASE_URL')
    """
    spec = next(
        (
            pod
            for obj in objs
            if obj.get("kind") in mf.WORKLOAD_KINDS
            for pod in [mf.workload_pod_spec(obj)]
            if pod and pod.get("containers")
        ),
        None,
    )
    if spec is None:
        raise ConfigError(
            "--sandbox-migrate-cmd: on kube the migrations run as a Job with the app's image, "
            "but the manifests hold no Deployment/StatefulSet with a container"
        )
    app = spec["containers"][0]
    container: dict[str, Any] = {
        "name": "migrate",
        "image": app["image"],
        "command": list(cmd),
        # Not the clock's preload: the Job has no libfaketime volume (backends/kube/clock.py).
        "env": copy.deepcopy([e for e in app.get("env") or [] if e.get("name") not in CLOCK_ENV]),
    }
    for key in ("envFrom", "resources", "imagePullPolicy", "workingDir", "securityContext"):
        if key in app:
            container[key] = copy.deepcopy(app[key])
    if not any(e.get("name") == "DATABASE_URL" for e in container["env"]):
        container["env"].insert(
            0,
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": "url"}},
            },
        )
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    for key in ("imagePullSecrets", "serviceAccountName", "securityContext"):
        if key in spec:
            pod_spec[key] = copy.deepcopy(spec[key])
    labels = {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/component": "migrate"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB_NAME, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(deadline_s)),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _await_db_service(target: Any, namespace: str, deadline: float) -> None:
    # The Job reaches PostgreSQL through its Service, whose endpoints list the pod only once its
    # readiness probe passed (our own checks go straight to the pod): wait for that first.
    while time.monotonic() < deadline:
        try:
            endpoints = target.core.read_namespaced_endpoints(PG_SERVICE, namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return  # an external database (--sandbox-db-dsn): no Service of ours
            raise
        if any(subset.addresses for subset in endpoints.subsets or []):
            return
        time.sleep(_POLL_S)


def run_job(target: Any, namespace: str, job: Any, timeout: float) -> tuple[int | None, str, str]:
    """Create ``job`` once the database Service routes, wait for it; ``(code, logs, why)``.

    ``code`` is ``None`` when it did not finish (timeout, image or container problems).
    """
    _await_db_service(target, namespace, time.monotonic() + timeout)
    k8s.BatchV1Api(target.api).create_namespaced_job(namespace, job)
    return await_job(target, namespace, timeout)


def await_job(target: Any, namespace: str, timeout: float) -> tuple[int | None, str, str]:
    """Wait for the migration Job made before; ``(code, logs, why)`` as :func:`run_job`."""
    batch = k8s.BatchV1Api(target.api)
    deadline = time.monotonic() + timeout
    stuck_since = 0.0
    while time.monotonic() < deadline:
        status: Any = batch.read_namespaced_job_status(JOB_NAME, namespace).status
        if status.succeeded:
            return 0, _logs(target, namespace), ""
        if status.failed:
            code, why = _exit(target, namespace)
            return code, _logs(target, namespace), why
        waiting = _waiting(target, namespace)
        if waiting in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"):
            return None, "", f"could not start: its pod cannot get the app's image ({waiting})"
        if waiting in ("CreateContainerConfigError", "CreateContainerError"):
            # Often transient (the kubelet has not seen the Secret yet): fatal only if it stays.
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since > _STUCK_S:
                why = f"could not start: its container cannot be created ({waiting})"
                return None, _logs(target, namespace), why
        else:
            stuck_since = 0.0
        time.sleep(_POLL_S)
    return None, _logs(target, namespace), f"did not finish in {timeout:g}s"


def _pods(target: Any, namespace: str) -> list[Any]:
    pods = target.core.list_namespaced_pod(namespace, label_selector=f"job-name={JOB_NAME}")
    return list(pods.items)


def _logs(target: Any, namespace: str) -> str:
    # The migration's own log; the database wait's when the migration never started.
    for pod in _pods(target, namespace):
        for container in ("migrate", INIT_NAME):
            try:
                text = str(
                    target.core.read_namespaced_pod_log(
                        pod.metadata.name, namespace, container=container
                    )
                )
            except k8s.ApiException:
                continue
            if text.strip() or container == INIT_NAME:
                return text
    return ""


def _exit(target: Any, namespace: str) -> tuple[int | None, str]:
    for pod in _pods(target, namespace):
        for state in pod.status.init_container_statuses or []:
            done = state.state.terminated
            if done is not None and done.exit_code:
                return int(
                    done.exit_code
                ), f"could not start: {state.name} exited with code {done.exit_code}"
        for state in pod.status.container_statuses or []:
            done = state.state.terminated
            if done is not None:
                return int(done.exit_code), f"exited with code {done.exit_code}"
    return None, "failed (the Job's deadline passed or its pod was removed)"


def _waiting(target: Any, namespace: str) -> str:
    for pod in _pods(target, namespace):
        for state in pod.status.container_statuses or []:
            if state.state.waiting is not None:
                return str(state.state.waiting.reason or "")
    return ""

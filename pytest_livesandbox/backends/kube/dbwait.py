"""App pods created while PostgreSQL starts: an init container holds them until the app can log in.

The kube backend creates the app's workloads (and the first migration Job) as soon as the image
digest and the ``livesandbox-db`` Secret are known, instead of after PostgreSQL is ready, so
scheduling, the image pull and the pod sandbox overlap PostgreSQL's initdb. Each pod template
gets the init container ``livesandbox-wait-db`` first: it runs ``psql`` (from the sandbox's
PostgreSQL image, which the node pulls anyway) with the app's ``DATABASE_URL`` until a query
succeeds, so the app's own containers still start only once their role logs in (through the
fault proxy, when it is on): no app sees a half-made database or has to retry through start-up::

    add_db_wait(objs, "postgres:15")        # in place: Deployments, StatefulSets, Jobs, ...
    objs[0]["spec"]["template"]["spec"]["initContainers"][0]["name"]   # 'livesandbox-wait-db'

The container passes the ``restricted`` Pod Security Standard (it runs as ``nobody``), so it
never lowers what the app's own pods pass.
"""

from __future__ import annotations

from typing import Any

from . import manifests as mf
from .postgres import APP_SECRET

INIT_NAME = "livesandbox-wait-db"
NOBODY = 65534
# Quiet while waiting; every 25th failed attempt (~10 s) says why, with no secret in it
# (psql's errors name host, port and user, never the password).
SCRIPT = f"""command -v psql >/dev/null 2>&1 || {{
  echo "{INIT_NAME}: this image has no psql: use a PostgreSQL image (--sandbox-image postgres=...)"
  exit 3
}}
n=0
until out=$(psql "$DATABASE_URL" -Atqc 'SELECT 1' 2>&1); do
  n=$((n + 1))
  if [ $((n % 25)) -eq 0 ]; then echo "{INIT_NAME}: waiting for the database: $out" | head -n 2; fi
  sleep 0.2
done
"""


def wait_container(image: str) -> dict[str, Any]:
    """The init container: ``psql`` against the Secret's ``url`` until it answers."""
    return {
        "name": INIT_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", SCRIPT],
        "env": [
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": "url"}},
            },
            {"name": "PGCONNECT_TIMEOUT", "value": "3"},
        ],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"memory": "64Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NOBODY,
            "runAsGroup": NOBODY,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def add_db_wait(objs: list[dict[str, Any]], image: str) -> int:
    """Put :func:`wait_container` first in every pod template of ``objs``; return how many.

    >>> deploy = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{}]}}}}
    >>> add_db_wait([deploy, {"kind": "Service"}], "postgres:15")
    1
    >>> [c["name"] for c in deploy["spec"]["template"]["spec"]["initContainers"]]
    ['livesandbox-wait-db']
    """
    count = 0
    for obj in objs:
        pod = mf.workload_pod_spec(obj)
        if pod is None or not pod.get("containers"):
            continue
        inits = [c for c in pod.get("initContainers") or [] if c.get("name") != INIT_NAME]
        pod["initContainers"] = [wait_container(image), *inits]
        count += 1
    return count

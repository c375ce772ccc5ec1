"""Kube bring-up with ``--sandbox-deployer=argocd`` against ``apply``, by stage, on the same cluster.

    KUBECONFIG=/var/lib/livesandbox-cluster/kubeconfig python benchmarks/argocd_vs_apply.py [--runs 3]

Both sides are ``pytest --sandbox=kube`` runs of one trivial test, alternating (argocd, apply, ...)
so load drifts hit both: ``apply`` with conftest_examples/kube's settings (the demo app's
manifests from examples/demo_app/k8s), ``argocd`` with conftest_examples/argocd's (the same
manifests from the in-cluster git server that ``cluster/argocd-up`` fills, synced by Argo CD).
The stages come from the sandbox's ``timings`` in the JSON report (offsets since the backend began):
namespace (``namespace_s``), PostgreSQL (to ``db_ready_s``; for apply this includes creating the
app's objects), sync (argocd: Application created -> sync operation Succeeded, ``synced_s``),
healthy (argocd: -> Argo CD reports Healthy, ``healthy_s``), endpoint (-> the health path answers
through the port-forward, ``app_ready_s``; for apply this is the whole rollout). Target: the
argocd bring-up (``app_ready_s``) at most 2x apply's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section  # noqa: E402

COMMON = [
    "--sandbox=kube",
    "--sandbox-image=postgres=localhost/livesandbox/postgres:15",
    "--sandbox-health-path=/readyz",
    "--sandbox-startup-timeout=120s",
]
DEPLOYERS = {
    "apply": [f"--sandbox-manifests={REPO / 'examples/demo_app/k8s'}"],
    "argocd": [
        "--sandbox-deployer=argocd",
        "--sandbox-git-repo=git://argocd-git.argocd.svc.cluster.local:9418/demo-app.git",
        "--sandbox-git-revision=main",
        "--sandbox-git-path=k8s",
    ],
}
STAGES = ("namespace", "PostgreSQL", "sync", "healthy", "endpoint")


def stages(t: dict[str, float]) -> dict[str, float]:
    """Durations per stage from a sandbox's timings (0 for a stage the deployer has not)."""
    ns, db, app = t["namespace_s"], t["db_ready_s"], t["app_ready_s"]
    synced, healthy = t.get("synced_s", db), t.get("healthy_s", t.get("synced_s", db))
    return {
        "namespace": ns,
        "PostgreSQL": db - ns,
        "sync": synced - db,
        "healthy": healthy - synced,
        "endpoint": app - healthy,
        "total": app,
    }


def once(deployer: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_first.py").write_text("def test_first(live_url):\n    pass\n")
        report = folder / "r.jsonl"
        env = dict(os.environ, LIVESANDBOX_STATE_DIR=str(folder / "state"))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *COMMON,
             *DEPLOYERS[deployer], f"--sandbox-report={report}"],
            cwd=folder, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"pytest ({deployer}) failed:\n{done.stdout[-3000:]}")
        events = [json.loads(line) for line in report.read_text().splitlines()]
        timings = events[0]["sandbox"]["timings"]
        result = stages(timings)
        result["teardown"] = float(events[-1]["teardown_s"])
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"argocd": [], "apply": []}
    for _ in range(args.runs):
        for deployer in ("argocd", "apply"):
            runs[deployer].append(once(deployer))

    def med(deployer: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[deployer])

    rows = "\n".join(
        f"| {stage} | {med('apply', stage):.2f} s | {med('argocd', stage):.2f} s |"
        for stage in (*STAGES, "teardown")
    )
    ratio = med("argocd", "total") / med("apply", "total")
    body = f"""
`KUBECONFIG=... python benchmarks/argocd_vs_apply.py --runs {args.runs}` on the single-node
cluster of `cluster/` (warm: images on the node; Argo CD v3.2.11 from `cluster/argocd-up`),
runs alternating argocd/apply. Median of {args.runs}, seconds per stage of the bring-up.

| stage | apply | argocd |
|---|---|---|
{rows}
| **bring-up (to the endpoint answering)** | **{med("apply", "total"):.2f} s** | **{med("argocd", "total"):.2f} s** |

argocd / apply: **{ratio:.2f}x** (target <= 2x). For apply, creating the app's objects is inside
"PostgreSQL" and the rollout inside "endpoint"; for argocd the rollout is inside "healthy" (Argo CD
reports Healthy once the Deployment is available), and "endpoint" is the port-forward and the
first answer. Teardown: argocd deletes the Application with the resources finalizer (Argo CD
deletes what it synced) and waits for it before deleting the namespace.
All runs (bring-up): apply {", ".join(f"{r['total']:.2f}" for r in runs["apply"])} s;
argocd {", ".join(f"{r['total']:.2f}" for r in runs["argocd"])} s.
"""
    print(body)
    print(f"written to {write_section('Argo CD deployer vs apply', body)}")


if __name__ == "__main__":
    main()

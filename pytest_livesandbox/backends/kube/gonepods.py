"""Keep the logs of pods that go away during the run (evicted, rolled out, deleted by chaos).

A failed test's artifacts are read from the API after the test (:mod:`.artifacts`), when a pod
deleted inside its window is gone with its logs. The process that made the sandbox watches the
namespace's pods instead; each time a pod is seen terminating (``deletionTimestamp`` set) its
containers' logs are read while the kubelet still serves them and kept in a folder every process
of the run reads (``info.extra["gone_pods"]``)::

    watcher = GonePods(configuration, "lsb-abc123", Path("/tmp/.../gone-abc123")).start()
    ...                       # <folder>/<pod>.<container>.log, <pod>.deleted (Unix time)
    watcher.close()

:func:`gone_logs` hands :mod:`.artifacts` those of the pods no longer listed.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client import ApiException

from ...locations import state_root
from .coreapi import CoreApi

LOG_LIMIT_BYTES = 512 << 10
_watch: Any = k8s_watch
WATCH_S = 30  # one watch request; then it is made again (and after an error, 0.5 s later)


def gone_pods_folder(sandbox_id: str) -> Path:
    """Where the logs of a sandbox's deleted pods are kept (this machine's state folder)."""
    return state_root() / f"gone-pods-{sandbox_id}"


def remove_gone_pods(sandbox_id: str) -> None:
    """Drop what a run killed before its teardown left (``livesandbox gc`` reaping it)."""
    shutil.rmtree(gone_pods_folder(sandbox_id), ignore_errors=True)


class GonePods:
    """A daemon thread watching one namespace's pods (see the module docstring)."""

    def __init__(self, configuration: k8s.Configuration, namespace: str, folder: Path) -> None:
        self._api: Any = k8s.ApiClient(configuration)
        self._core: Any = CoreApi(self._api)
        self.namespace = namespace
        self.folder = folder
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="livesandbox-gone-pods", daemon=True)

    def start(self) -> GonePods:
        """Make the folder, start watching."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def close(self, remove: bool = True) -> None:
        """Stop watching; remove the folder (``remove``)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(2)
        self._api.close()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch = _watch.Watch()
            try:
                for event in self._watch.stream(
                    self._core.list_namespaced_pod,
                    self.namespace,
                    timeout_seconds=WATCH_S,
                    _request_timeout=WATCH_S + 10,
                ):
                    if self._stop.is_set():
                        return
                    pod = event["object"]
                    if pod.metadata.deletion_timestamp is not None:
                        self.keep(pod)
            except Exception:
                self._stop.wait(0.5)  # the API server hiccuped, or the namespace is going

    def keep(self, pod: Any) -> None:
        """Read and keep the logs of a terminating pod (the longest read so far wins)."""
        name = pod.metadata.name
        marker = self.folder / f"{name}.deleted"
        if not marker.exists():
            # deletionTimestamp is when the grace period ends; the deletion was asked for earlier.
            grace = pod.metadata.deletion_grace_period_seconds or 0
            marker.write_text(str(pod.metadata.deletion_timestamp.timestamp() - grace))
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            try:
                text = str(
                    self._core.read_namespaced_pod_log(
                        name,
                        self.namespace,
                        container=container.name,
                        timestamps=True,
                        limit_bytes=LOG_LIMIT_BYTES,
                        _request_timeout=5,
                    )
                )
            except (ApiException, OSError, ValueError):
                continue
            path = self.folder / f"{name}.{container.name}.log"
            if not path.exists() or path.stat().st_size < len(text.encode()):
                tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)


def gone_logs(folder: str | None, listed: set[str]) -> dict[str, str]:
    """``{"<pod>.<container>": log}`` kept for pods not in ``listed`` (pod names)."""
    if not folder or not Path(folder).is_dir():
        return {}
    found = {}
    for path in Path(folder).glob("*.log"):
        pod = path.name.rsplit(".", 2)[0]
        if pod not in listed:
            found[path.name.removesuffix(".log")] = path.read_text(encoding="utf-8")
    return found


def deletions(folder: str | None) -> list[tuple[float, str]]:
    """``(Unix time, pod)`` of the pods seen deleted (some may still be terminating)."""
    if not folder or not Path(folder).is_dir():
        return []
    found = []
    for path in Path(folder).glob("*.deleted"):
        try:
            found.append((float(path.read_text()), path.name.removesuffix(".deleted")))
        except ValueError:
            continue
    return found

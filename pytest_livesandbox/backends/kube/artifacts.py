"""Per-test artifacts of a kube/gke sandbox: what its namespace did during one test's window.

For a failed test (the recorder in :mod:`..report.artifacts` calls this and redacts every file):

- ``logs/<pod>.<container>.log``: each container's log lines stamped inside ``[since, until]``
  (the API's ``sinceSeconds`` plus ``timestamps=true``, cut to the window), at most
  ``LOG_LIMIT_BYTES`` per container; ``....previous.log`` from the container before a restart;
  pods deleted meanwhile (an eviction, a rollout) too, from what :mod:`.gonepods` kept;
- ``events.txt``: the namespace's events in the window (time, type, reason, object, count,
  message);
- ``pods.txt``: pod status changes in the window (restarts with the last termination's reason
  and exit code, e.g. ``OOMKilled``; readiness and other condition flips; phase; deletions).

Every API read runs in a thread pool, so a failed test costs about one round trip::

    files = collect(target, "lsb-abc123", since=t0, until=t1, dest=Path("out/x"))
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client import ApiException

from ...info import SandboxInfo
from .client import KubeTarget, connect
from .gonepods import GonePods, deletions, gone_logs, gone_pods_folder

LOG_LIMIT_BYTES = 512 << 10
WORKERS = 8
SLACK_S = 1.0  # kubelet timestamps and our clock may differ a little


def _ts(value: Any) -> float | None:
    """A datetime (or RFC 3339 text) from the API as Unix time."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return float(value.timestamp())
    return None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def cut_log(text: str, since: float, until: float) -> str:
    r"""Lines of a ``timestamps=true`` log stamped inside the window (stamps kept).

    >>> log = "2026-01-01T00:00:01.5Z a\\n2026-01-01T00:00:03Z b\\n"
    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    >>> cut_log(log, t0 + 1, t0 + 2)
    '2026-01-01T00:00:01.5Z a\\n'
    """
    kept = []
    for line in text.splitlines(keepends=True):
        stamp, _, _ = line.partition(" ")
        try:
            when = _ts(_trim_nanos(stamp))
        except ValueError:
            when = None
        if when is None or since - SLACK_S <= when <= until + SLACK_S:
            kept.append(line)
    return "".join(kept)


def _trim_nanos(stamp: str) -> str:
    # 2026-01-01T00:00:01.123456789Z -> microseconds (fromisoformat takes at most 6 digits)
    head, dot, frac = stamp.partition(".")
    if not dot:
        return stamp
    digits = frac.rstrip("Z")
    return f"{head}.{digits[:6]}Z"


class Collector:
    """:func:`collect` for a sandbox, with the backend's client or (xdist workers) its own."""

    def __init__(self, targets: dict[str, KubeTarget]) -> None:
        self.targets = targets  # the backend's clients by sandbox id (controller process)
        self.own: dict[str, KubeTarget] = {}
        self.watchers: dict[str, GonePods] = {}

    def watch(self, info: SandboxInfo, target: KubeTarget) -> None:
        """Keep the logs of pods deleted while the run goes on (the provisioning process)."""
        assert info.namespace is not None
        folder = gone_pods_folder(info.id)
        self.watchers[info.id] = GonePods(target.api.configuration, info.namespace, folder)
        self.watchers[info.id].start()
        info.extra["gone_pods"] = str(folder)

    def stop(self, info: SandboxInfo) -> None:
        """Stop watching; the kept logs go."""
        watcher = self.watchers.pop(info.id, None)
        if watcher is not None:
            watcher.close()

    def collect(self, info: SandboxInfo, since: float, until: float, dest: Path) -> list[Path]:
        """The window's artifacts of ``info``'s namespace (none without one)."""
        if not info.namespace:
            return []
        target = self.targets.get(info.id) or self.own.get(info.id)
        if target is None:
            kubeconfig = info.extra.get("kubeconfig")
            target = self.own[info.id] = connect(
                kubeconfig=Path(kubeconfig) if kubeconfig else None,
                context=info.extra.get("context"),
                allow_context=None,
                check_production=False,
            )
        gone = info.extra.get("gone_pods")
        return collect(target, info.namespace, since, until, dest, gone)


def collect(
    target: KubeTarget,
    namespace: str,
    since: float,
    until: float,
    dest: Path,
    gone: str | None = None,
) -> list[Path]:
    """Write the window's logs, events and pod changes under ``dest``; return the files.

    ``gone`` is the folder where :mod:`.gonepods` keeps the logs of deleted pods.
    """
    core = target.core
    pods = core.list_namespaced_pod(namespace).items
    listed = {pod.metadata.name for pod in pods}
    since_s = max(1, math.ceil(time.time() - since + SLACK_S))
    jobs: list[tuple[Path, Callable[[], str]]] = []
    for name, text in gone_logs(gone, listed).items():
        jobs.append((dest / "logs" / f"{name}.log", lambda text=text: text))  # type: ignore[misc]
    for pod in pods:
        name = pod.metadata.name
        statuses = {
            s.name: s
            for s in [
                *(pod.status.init_container_statuses or []),
                *(pod.status.container_statuses or []),
            ]
        }
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            status = statuses.get(container.name)
            if status is None:
                continue
            base = dest / "logs" / f"{name}.{container.name}"
            jobs.append((Path(f"{base}.log"), _log(core, namespace, name, container.name, since_s)))
            if (status.restart_count or 0) > 0:
                jobs.append(
                    (
                        Path(f"{base}.previous.log"),
                        _log(core, namespace, name, container.name, since_s, previous=True),
                    )
                )
    jobs.append((dest / "events.txt", lambda: events_text(core, namespace, since, until)))
    with ThreadPoolExecutor(
        max_workers=WORKERS, thread_name_prefix="livesandbox-artifacts"
    ) as pool:
        texts = list(pool.map(lambda job: job[1](), jobs))
    written = []
    for (path, _), text in zip(jobs, texts, strict=True):
        if path.parent.name == "logs":
            text = cut_log(text, since, until)
        if not text.strip():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    changes = pod_changes(pods, since, until, deletions(gone))
    if changes:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "pods.txt").write_text(changes, encoding="utf-8")
        written.append(dest / "pods.txt")
    return written


def _log(
    core: Any, namespace: str, pod: str, container: str, since_s: int, previous: bool = False
) -> Callable[[], str]:
    def read() -> str:
        try:
            return str(
                core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container=container,
                    since_seconds=since_s,
                    timestamps=True,
                    previous=previous,
                    limit_bytes=LOG_LIMIT_BYTES,
                    _request_timeout=10,
                )
            )
        except ApiException as exc:
            return f"(log of {pod}/{container} not readable: {exc.status} {exc.reason})\n"

    return read


def events_text(core: Any, namespace: str, since: float, until: float) -> str:
    """The namespace's events whose last occurrence lies in the window, oldest first."""
    rows = []
    for event in core.list_namespaced_event(namespace, _request_timeout=10).items:
        when = (
            _ts(event.last_timestamp)
            or _ts(event.event_time)
            or _ts(event.first_timestamp)
            or _ts(event.metadata.creation_timestamp)
        )
        if when is None or not since - SLACK_S <= when <= until + SLACK_S:
            continue
        obj = event.involved_object
        rows.append(
            (
                when,
                f"{_iso(when)} {event.type or '-'} {event.reason or '-'} "
                f"{obj.kind}/{obj.name} x{event.count or 1}: {(event.message or '').strip()}",
            )
        )
    return "".join(f"{line}\n" for _, line in sorted(rows))


def pod_changes(
    pods: list[Any], since: float, until: float, deleted: list[tuple[float, str]] | None = None
) -> str:
    """Restarts, terminations and condition flips of ``pods`` inside the window.

    ``deleted``: ``(time, pod)`` of pods deleted (their deletion asked for) meanwhile.
    """
    rows: list[tuple[float, str]] = []

    def inside(t: float | None) -> bool:
        return t is not None and since - SLACK_S <= t <= until + SLACK_S

    for at, gone in deleted or []:
        if inside(at):
            rows.append((at, f"{_iso(at)} pod/{gone} deleted (logs/{gone}.*: kept until it went)"))

    for pod in pods:
        name = pod.metadata.name
        for cond in pod.status.conditions or []:
            when = _ts(cond.last_transition_time)
            if inside(when):
                assert when is not None
                rows.append((when, f"{_iso(when)} pod/{name} {cond.type}={cond.status}"))
        for status in [
            *(pod.status.init_container_statuses or []),
            *(pod.status.container_statuses or []),
        ]:
            last = status.last_state.terminated if status.last_state else None
            if last is not None and inside(_ts(last.finished_at)):
                when = _ts(last.finished_at)
                assert when is not None
                rows.append(
                    (
                        when,
                        f"{_iso(when)} pod/{name} container {status.name} terminated: "
                        f"{last.reason} (exit {last.exit_code}); restarts now "
                        f"{status.restart_count}",
                    )
                )
        started = _ts(pod.status.start_time)
        if inside(started):
            assert started is not None
            rows.append((started, f"{_iso(started)} pod/{name} started ({pod.status.phase})"))
    return "".join(f"{line}\n" for _, line in sorted(rows))

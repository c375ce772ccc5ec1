"""Why pods are not coming up, in words: phase, container states, events, log tails, a hint.

The user must see the reason without kubectl::

    pod backend-6d5f9-x2x (Pending)
      container backend: waiting: ErrImageNeverPull: Container image "app:nope" is not present ...
    last events:
      Warning Failed Pod/backend-6d5f9-x2x: Error: ErrImageNeverPull
    Hint: the image is not on the node and may not be pulled: ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from kubernetes.client import ApiException

from ...errors import ClusterUnreachable, ProvisionError, SandboxError
from ...info import SandboxInfo
from ...logtail import last_lines, probe_lines

# Waiting reasons that never fix themselves: fail at once instead of at the deadline.
FATAL_WAITING = frozenset(
    {"ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff", "CrashLoopBackOff"}
)
# Reasons that may be transient (a registry hiccup, a Secret created a moment later).
SLOW_FATAL_WAITING = frozenset(
    {"ErrImagePull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
HINTS = {
    "image": (
        "the image cannot be used: check the name (--sandbox-image COMPONENT=IMAGE, "
        "ini livesandbox_image) and imagePullPolicy; a local cluster needs the image loaded into "
        "the node (e.g. `ctr -n k8s.io images import`), a remote one needs registry access."
    ),
    "crash": (
        "the container exits during start-up: read its log tail above; run the image yourself "
        "with DATABASE_URL set to see why."
    ),
    "oom": (
        "the container was killed for using more memory than its limit: raise "
        "resources.limits.memory in the manifest (the sandbox's default limit is 512Mi)."
    ),
    "config": (
        "the container could not be created from its spec: a missing Secret/ConfigMap key or a "
        "bad command (the message above names it)."
    ),
    "unschedulable": (
        "no node can take the pod: lower its resource requests, or give the cluster room."
    ),
}


def container_statuses(pod: Any) -> list[Any]:
    """Init and regular container statuses of ``pod``."""
    status = pod.status
    if status is None:
        return []
    return list(status.init_container_statuses or []) + list(status.container_statuses or [])


def pod_failure(pod: Any, slow_ok: bool = True) -> tuple[str, str] | None:
    """``(kind, text)`` when ``pod`` failed in a way waiting will not fix, else ``None``.

    ``kind`` picks the hint: image, crash, oom, config. With ``slow_ok`` the possibly transient
    reasons (``ErrImagePull``, ``CreateContainerConfigError``) do not count yet.
    """
    for cs in container_statuses(pod):
        waiting = cs.state.waiting if cs.state else None
        terminated = cs.state.terminated if cs.state else None
        last = cs.last_state.terminated if cs.last_state else None
        reason = waiting.reason if waiting is not None else None
        if reason in FATAL_WAITING or (not slow_ok and reason in SLOW_FATAL_WAITING):
            assert waiting is not None
            if waiting.reason == "CrashLoopBackOff" and last is not None:
                return _exit_kind(last), f"container {cs.name} {describe_exit(last)}"
            kind = "image" if "Image" in (waiting.reason or "") else "config"
            return kind, f"container {cs.name}: {waiting.reason}: {waiting.message or ''}".strip()
        for term in (terminated, last):
            if term is not None and (term.exit_code or 0) != 0:
                return _exit_kind(term), f"container {cs.name} {describe_exit(term)}"
    if pod.status is not None and pod.status.phase == "Failed":
        return "crash", f"pod failed: {pod.status.reason or ''} {pod.status.message or ''}".strip()
    return None


def _exit_kind(term: Any) -> str:
    return "oom" if term.reason == "OOMKilled" else "crash"


def describe_exit(term: Any) -> str:
    """``exited with code 3 (Error)`` / ``was OOMKilled (exit code 137)``."""
    if term.reason == "OOMKilled":
        return f"was OOMKilled (exit code {term.exit_code})"
    if term.reason == "StartError" and term.message:  # e.g. the command is not in the image
        return f"exited with code {term.exit_code} (StartError: {term.message})"
    return f"exited with code {term.exit_code} ({term.reason or 'Error'})"


def unschedulable(pod: Any) -> str | None:
    """The scheduler's message when ``pod`` cannot be placed."""
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason}: {cond.message}"
    return None


def describe_pod(pod: Any) -> list[str]:
    """Phase and one line per container state."""
    lines = [f"pod {pod.metadata.name} ({pod.status.phase if pod.status else '?'})"]
    pending = unschedulable(pod)
    if pending:
        lines.append(f"  not scheduled: {pending}")
    for cs in container_statuses(pod):
        state = cs.state
        if state and state.waiting:
            text = f"waiting: {state.waiting.reason}: {state.waiting.message or ''}".rstrip(": ")
        elif state and state.terminated:
            text = describe_exit(state.terminated)
        elif state and state.running:
            text = "running, ready" if cs.ready else "running, not ready yet"
        else:
            text = "unknown"
        if cs.restart_count:
            text += f"; restarted {cs.restart_count}x"
            if cs.last_state and cs.last_state.terminated:
                text += f", last {describe_exit(cs.last_state.terminated)}"
        lines.append(f"  container {cs.name}: {text}")
    return lines


def last_events(
    core: Any, namespace: str, limit: int = 8, ready_pods: Iterable[str] = ()
) -> list[str]:
    """The namespace's newest events, oldest first, one line each.

    Repeats of one reason on one object (a readiness probe failing every second) are one line,
    the newest message, with how often it happened; probe failures of ``ready_pods`` (they
    passed since) are left out.
    """
    settled = {f"Pod/{name}" for name in ready_pods}
    try:
        events = core.list_namespaced_event(namespace).items
    except ApiException:
        return []

    def when(ev: Any) -> float:
        moment = ev.last_timestamp or ev.event_time or ev.first_timestamp
        return moment.timestamp() if moment else 0.0

    grouped: dict[tuple[str, str, str], tuple[Any, int]] = {}
    for ev in sorted(events, key=when):
        obj = ev.involved_object
        key = (ev.type, ev.reason, f"{obj.kind}/{obj.name}")
        if ev.reason == "Unhealthy" and key[2] in settled:
            continue
        seen = grouped.pop(key, (None, 0))[1]  # re-inserted: ordered by the newest
        grouped[key] = (ev, seen + (ev.count or 1))
    lines = []
    for (kind, reason, obj_name), (ev, count) in list(grouped.items())[-limit:]:
        times = f" ({count}x)" if count > 1 else ""
        lines.append(f"  {kind} {reason} {obj_name}: {(ev.message or '').strip()}{times}")
    return lines


def probe_paths(pod: Any, container: str) -> list[str]:
    """The HTTP paths the kubelet probes ``container`` on (readiness, liveness, startup)."""
    paths = []
    for spec in (pod.spec.containers or []) if pod.spec else []:
        if spec.name != container:
            continue
        for probe in (spec.readiness_probe, spec.liveness_probe, spec.startup_probe):
            if probe is not None and probe.http_get is not None and probe.http_get.path:
                paths.append(probe.http_get.path)
    return paths


def log_tail(core: Any, pod: Any, container: str, lines: int = 15, drop: Iterable[str] = ()) -> str:
    """The container's last log lines (the previous run's when it restarted).

    Lines containing any of ``drop`` (probes' access-log lines) are left out.
    """
    drop = list(drop)
    restarted = any(cs.name == container and cs.restart_count for cs in container_statuses(pod))
    for previous in (restarted, False) if restarted else (False,):
        try:
            text = core.read_namespaced_pod_log(
                pod.metadata.name,
                pod.metadata.namespace,
                container=container,
                tail_lines=lines + 200 if drop else lines,
                previous=previous,
                _request_timeout=5,
            )
        except (ApiException, OSError):
            continue
        shown = last_lines(str(text or "").rstrip(), lines, drop)
        if shown:
            return shown
    return ""


def report(
    core: Any,
    namespace: str,
    pods: Sequence[Any],
    *,
    kinds: Iterable[str] = (),
    secrets: Sequence[str] = (),
    health_path: str | None = None,
) -> str:
    """Pod states, last events, log tails and hints for ``kinds``.

    The log tails are those of the containers that started and are not ready (all that started,
    when every one is ready), without the access-log lines of the kubelet's probes and of ours
    (``health_path``): the app's own last words, not a thousand ``GET /readyz``.
    """
    lines: list[str] = []
    for pod in pods:
        lines.extend(describe_pod(pod))
    if not pods:
        lines.append(f"no pods in namespace {namespace} (see the events)")
    ready = [p.metadata.name for p in pods if all(cs.ready for cs in container_statuses(p))]
    events = last_events(core, namespace, ready_pods=ready)
    if events:
        lines.append("last events:")
        lines.extend(events)
    started = [
        (pod, cs)
        for pod in pods
        for cs in container_statuses(pod)
        if cs.restart_count or (cs.state and (cs.state.running or cs.state.terminated))
    ]
    troubled = [(pod, cs) for pod, cs in started if cs.restart_count or not cs.ready]
    for pod, cs in troubled or started:
        drop = probe_lines(health_path, *probe_paths(pod, cs.name))
        tail = log_tail(core, pod, cs.name, drop=drop)
        if tail:
            lines.append(f"log tail of {pod.metadata.name}/{cs.name}:")
            lines.extend("  " + line for line in tail.splitlines())
    kinds = list(dict.fromkeys(kinds))
    if not kinds and any(unschedulable(p) for p in pods):
        kinds = ["unschedulable"]
    for kind in kinds:
        lines.append(f"Hint: {HINTS[kind]}")
    return scrub("\n".join(lines), secrets)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def api_error(exc: Exception, info: SandboxInfo) -> SandboxError:
    """A library error during bring-up as one of ours, with the API server's own words."""
    where = f"{info.extra.get('server', 'the API server')} (context {info.extra.get('context')!r})"
    if isinstance(exc, ApiException):
        match = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', str(exc.body or ""))
        reason = match.group(1) if match else f"{exc.status} {exc.reason}"
        if exc.status in (401, 403):
            return ClusterUnreachable(
                f"{where} refused a request while bringing the sandbox up: {reason}. The "
                "kubeconfig's user needs rights to create namespaces and the objects in them."
            )
        return ProvisionError(f"the Kubernetes API refused a request: {reason}")
    return ClusterUnreachable(
        f"lost the connection to {where} while bringing the sandbox up "
        f"({type(exc).__name__}: {str(exc)[:300]}); is the cluster still running?"
    )

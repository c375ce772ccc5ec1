"""The ``livesandbox`` section of pytest's terminal summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import SandboxConfig
from .events import RunEvents
from .html import HtmlSink
from .jsonl import JsonlSink
from .webhook import WebhookSink

if TYPE_CHECKING:
    from ..parallel import SandboxManager


def summary_lines(
    manager: SandboxManager,
    config: SandboxConfig,
    times: dict[str, float],
    errors_shown: bool = False,
) -> list[str]:
    """Lines such as ``sandbox 3f9c2a1b (local) ready in 0.41s, torn down in 0.08s``.

    The last line is the wall time of the whole run: pytest's own "7 passed in 0.53s" starts
    after the sandbox is up, so it leaves the bring-up out.
    """
    lines = _sandbox_lines(manager, config, times, errors_shown)
    if "started" in times:
        lines.append(wall_time_line(time.perf_counter() - times["started"], manager, times))
    return lines


def wall_time_line(wall: float, manager: SandboxManager, times: dict[str, float]) -> str:
    """``whole run 4.12s wall, including bring-up 0.52s and teardown 0.15s``."""
    info = manager.last_info
    ready = info.timings.get("ready_s") if info is not None else None
    parts = [f"bring-up {ready:.2f}s"] if ready is not None else []
    if "teardown_s" in times:
        parts.append(f"teardown {times['teardown_s']:.2f}s")
    return f"whole run {wall:.2f}s wall" + (f", including {' and '.join(parts)}" if parts else "")


def _sandbox_lines(
    manager: SandboxManager, config: SandboxConfig, times: dict[str, float], errors_shown: bool
) -> list[str]:
    if manager.error:
        # Shown in full at the first test that needed the sandbox; here only its class.
        kind = manager.error.split(":", 1)[0]
        shown = f"{kind} (shown in full above)" if errors_shown else manager.error
        return [f"sandbox could not be provisioned ({config.backend}): {shown}"]
    info = manager.last_info
    if info is None:
        if manager.not_made:
            return [f"backend {config.backend}: no sandbox made: {manager.not_made}"]
        return [f"backend {config.backend}: no sandbox was needed"]
    ready = info.timings.get("ready_s")
    reused = "reused, " if info.extra.get("reused") else ""
    line = f"sandbox {info.id} ({info.backend}) {reused}ready in {ready:.2f}s"
    if "teardown_s" in times:
        if info.extra.get("reuse_key"):
            line += f", kept warm (reuse key {info.extra['reuse_key']})"
        elif config.keep:
            line += ", kept running"
        else:
            line += f", torn down in {times['teardown_s']:.2f}s"
    lines = [line]
    if info.extra.get("reuse_failed"):
        lines.append(
            f"a warm sandbox could not be reused ({info.extra['reuse_failed']}): new one made"
        )
    if info.extra.get("app_rolled"):
        lines.append(f"rolled to the new build: {', '.join(info.extra['app_rolled'])}")
    stages = stage_line(info.timings)
    if stages:
        lines.append(stages)
    if info.endpoint:
        lines.append(f"endpoint: {info.endpoint}")
    if info.extra.get("argocd_application"):
        revision = str(info.extra.get("synced_revision") or "?")
        lines.append(f"Argo CD Application {info.extra['argocd_application']} at {revision[:12]}")
    if info.db is not None:
        lines.append(f"database: {info.db.redacted_dsn}")
    if config.keep:
        lines.append(f"remove it with: livesandbox down {info.id}")
    return lines


#: Bring-up timings: durations (build, push) and offsets since provisioning began (the rest).
DURATIONS = (("build_s", "build"), ("push_s", "push"), ("sync_s", "sync"), ("roll_s", "roll"))
OFFSETS = (
    ("namespace_s", "namespace"),
    ("db_ready_s", "db"),
    ("synced_s", "synced"),
    ("healthy_s", "healthy"),
    ("images_ready_s", "images"),
    ("app_ready_s", "app"),
)


def stage_line(timings: dict[str, float]) -> str:
    """``stages: build 2.01s, push 0.15s; ready at: db 5.47s, app 7.21s`` (empty: no stages).

    >>> stage_line({"build_s": 2.0, "push_s": 0.1, "db_ready_s": 5.0, "app_ready_s": 7.0})
    'stages: build 2.00s, push 0.10s; ready at: db 5.00s, app 7.00s'
    """
    took = [f"{label} {timings[key]:.2f}s" for key, label in DURATIONS if key in timings]
    at = [f"{label} {timings[key]:.2f}s" for key, label in OFFSETS if key in timings]
    if not took:
        return ""  # without a build the ready line says it all
    return "stages: " + ", ".join(took) + ("; ready at: " + ", ".join(at) if at else "")


def report_lines(events: RunEvents) -> list[str]:
    """Where the run's reports went: ``report: run.jsonl``, artifacts, webhook delivery."""
    lines = [
        f"the app restarted {count}x during {nodeid} (no chaos fault asked for it: see app.log)"
        for nodeid, count in events.app_restarts
    ]
    for sink in events.sinks:
        if isinstance(sink, JsonlSink):
            lines.append(f"report: {sink.path}")
        elif isinstance(sink, HtmlSink):
            lines.append(f"html report: {sink.path}")
        elif isinstance(sink, WebhookSink):
            lines.append(sink.summary() + (" - receiver down" if sink.lost else ""))
    if events.artifact_dirs:
        root = Path(next(iter(events.artifact_dirs))).parent
        lines.append(f"artifacts of {len(events.artifact_dirs)} failed test(s): {root}")
    return lines

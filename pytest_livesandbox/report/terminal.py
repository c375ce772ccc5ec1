"""The ``livesandbox`` section of pytest's terminal summary."""

from __future__ import annotations

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
    manager: SandboxManager, config: SandboxConfig, times: dict[str, float]
) -> list[str]:
    """Lines such as ``sandbox 3f9c2a1b (local) ready in 0.41s, torn down in 0.08s``."""
    if manager.error:
        return [f"sandbox could not be provisioned ({config.backend}): {manager.error}"]
    info = manager.last_info
    if info is None:
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
    if info.endpoint:
        lines.append(f"endpoint: {info.endpoint}")
    if info.db is not None:
        lines.append(f"database: {info.db.redacted_dsn}")
    if config.keep:
        lines.append(f"remove it with: livesandbox down {info.id}")
    return lines


def report_lines(events: RunEvents) -> list[str]:
    """Where the run's reports went: ``report: run.jsonl``, artifacts, webhook delivery."""
    lines = []
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

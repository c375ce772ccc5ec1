"""The ``livesandbox`` section of pytest's terminal summary."""

from __future__ import annotations

from ..config import SandboxConfig
from ..parallel import SandboxManager


def summary_lines(
    manager: SandboxManager, config: SandboxConfig, times: dict[str, float]
) -> list[str]:
    """Lines such as ``sandbox 3f9c2a1b (local) ready in 0.41s, torn down in 0.08s``."""
    if manager.error:
        return [f"sandbox could not be provisioned ({config.backend.value}): {manager.error}"]
    info = manager.last_info
    if info is None:
        return [f"backend {config.backend.value}: no sandbox was needed"]
    ready = info.timings.get("ready_s")
    line = f"sandbox {info.id} ({info.backend}) ready in {ready:.2f}s"
    if "teardown_s" in times:
        line += ", kept running" if config.keep else f", torn down in {times['teardown_s']:.2f}s"
    lines = [line]
    if info.endpoint:
        lines.append(f"endpoint: {info.endpoint}")
    if info.db is not None:
        lines.append(f"database: {info.db.redacted_dsn}")
    if config.keep:
        lines.append(f"remove it with: livesandbox down {info.id}")
    if config.report:
        lines.append(f"report: {config.report}")
    return lines

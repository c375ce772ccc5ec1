"""Where the plugin keeps files on this machine: per-sandbox state and the reusable cache.

Both are reachable by the unprivileged user PostgreSQL runs as when pytest runs as root
(``/root`` is usually mode 0700, so nothing the server needs may live under it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def state_root() -> Path:
    """Folder holding one subfolder per local sandbox (``state.json``, logs, data)."""
    configured = os.environ.get("LIVESANDBOX_STATE_DIR")
    root = (
        Path(configured).expanduser().resolve()
        if configured
        else _tmp() / f"livesandbox-{os.getuid()}"
    )
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def cache_root() -> Path:
    """Folder for things worth keeping between runs (initdb'd template, binary copies)."""
    configured = os.environ.get("LIVESANDBOX_CACHE_DIR")
    if configured:
        root = Path(configured).expanduser().resolve()
    elif os.geteuid() == 0:
        root = Path("/var/tmp") / "livesandbox-cache"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livesandbox"
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def _tmp() -> Path:
    return Path(tempfile.gettempdir())

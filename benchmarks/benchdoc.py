"""Write one benchmark's section into docs/benchmarks.md, leaving the other sections alone.

Importing it also drops ``PYTHONDONTWRITEBYTECODE`` for the measured subprocesses: some shells
here export it, and with the plugin installed editable every run would then compile its ~130
modules and pytest would rewrite their asserts again (~0.4 s a run, ours and the peers' alike
when the plugin is installed); a pip-installed plugin has its .pyc from the install.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
HEADER = (
    "# Benchmarks\n\n"
    "Each section is written by its script in `benchmarks/` and compares against a peer run in\n"
    "the same script on the same machine, so the ratios hold better than the absolute numbers.\n"
)


def machine() -> str:
    """One line describing where the numbers were taken."""
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def write_section(title: str, body: str) -> Path:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n\n_Machine: {machine()}_\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text + "\n" + section
    DOC.write_text(text.rstrip() + "\n")
    return DOC

"""Failure artifacts: the sandbox's logs from a failed test's time window, saved next to the report.

    pytest --sandbox=local -n 2 --sandbox-report=out/run.jsonl
    # a failed test_api.py::test_create gets
    out/run.jsonl.artifacts/test_api.py__test_create-<hash>/app.log       (app output)
    out/run.jsonl.artifacts/test_api.py__test_create-<hash>/postgres.log  (server log)

:class:`ArtifactRecorder` runs in the process that runs the test (an xdist worker or the single
process): it notes the window when the test's setup starts and, if any phase failed, asks the
backend for that window after teardown. Backends with :class:`~..sandbox.LogOffsets` cut the
window by byte offsets (exact for logs without timestamps); others get the Unix-time window via
``collect_artifacts``. When an xdist worker dies mid-test the controller saves the logs' recent
part instead (:meth:`ArtifactRecorder.recent`). Every written file passes
:func:`.redaction.redact`. The paths end up in the test's ``livesandbox_artifacts`` user
property, hence in the JSONL/HTML/JUnit reports.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..info import SandboxInfo
from ..protocol import Backend as SandboxBackend
from ..protocol import LogOffsets
from .redaction import redact

MARKER = ".livesandbox-artifacts"


def artifact_root(report: Path | None, html: Path | None) -> Path | None:
    """``<report>.artifacts`` next to the JSONL report (else the HTML report); ``None`` if neither.

    >>> artifact_root(Path("out/run.jsonl"), None)
    PosixPath('out/run.jsonl.artifacts')
    """
    base = report or html
    return base.with_name(base.name + ".artifacts") if base is not None else None


def prepare_root(root: Path) -> None:
    """Empty the folder of a previous run (only if our marker says we made it) and mark it."""
    if (root / MARKER).is_file():
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by pytest-livesandbox; removed at the start of each run\n")


def slug(nodeid: str) -> str:
    """A folder name for a test id, unique even after shortening.

    >>> slug("tests/test_api.py::test_get[a/b]")
    'tests_test_api.py__test_get_a_b-cacd54'
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__")).strip("_.")
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:6]
    return f"{safe[:100]}-{digest}"


@dataclass
class _Window:
    since: float
    offsets: dict[str, int]


class ArtifactRecorder:
    """Notes each test's log window and saves it for failed tests (see the module docstring)."""

    def __init__(
        self, backend: SandboxBackend, info: SandboxInfo, root: Path, secrets: list[str]
    ) -> None:
        self.backend = backend
        self.info = info
        self.root = root
        self.secrets = secrets
        self._open: dict[str, _Window] = {}

    def _offsets(self) -> dict[str, int]:
        if isinstance(self.backend, LogOffsets):
            return self.backend.log_offsets(self.info)
        return {}

    def start(self, nodeid: str) -> None:
        """The test's setup begins."""
        self._open[nodeid] = _Window(time.time(), self._offsets())

    def finish(self, nodeid: str, failed: bool) -> list[str]:
        """The test's teardown ended; save its window if it ``failed``; return the file paths."""
        window = self._open.pop(nodeid, None)
        if window is None or not failed:
            return []
        backend = self.backend
        if isinstance(backend, LogOffsets):
            end = self._offsets()
            return self._save(
                nodeid, lambda dest: backend.collect_between(self.info, window.offsets, end, dest)
            )
        until = time.time()
        return self._save(
            nodeid, lambda dest: backend.collect_artifacts(self.info, window.since, until, dest)
        )

    def recent(self, nodeid: str, since: float) -> list[str]:
        """Save the logs since ``since`` for a test whose process died (no offsets survive)."""
        until = time.time()
        return self._save(
            nodeid, lambda dest: self.backend.collect_artifacts(self.info, since, until, dest)
        )

    def _save(self, nodeid: str, collect: Callable[[Path], list[Path]]) -> list[str]:
        dest = self.root / slug(nodeid)
        try:
            files = collect(dest)
        except Exception as exc:  # a report must not fail the run; say what went wrong
            dest.mkdir(parents=True, exist_ok=True)
            note = dest / "collect-error.txt"
            note.write_text(f"collecting artifacts failed: {type(exc).__name__}: {exc}\n")
            files = [note]
        for path in files:
            redact_file(path, self.secrets)
        return [str(path) for path in files]


def redact_file(path: Path, secrets: list[str]) -> None:
    """Rewrite a text artifact with its secrets redacted."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    path.write_text(redact(text, secrets), encoding="utf-8")

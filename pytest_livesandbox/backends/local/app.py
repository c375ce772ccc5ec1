"""The app under test as a supervised child process, its output appended to a log.

app = AppProcess(cmd, cwd, env, log=workdir / "app.log")
pid = app.start()
app.ensure_alive()        # AppCrashed with the last output once it exited
app.stop()                # SIGTERM its process group, SIGKILL after 5 s
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ...errors import AppCrashed, ProvisionError
from ...logtail import tail
from ...processes import terminate
from .launcher import supervisor_state


class AppProcess:
    """The app under test as a child process in its own session, output appended to a log."""

    def __init__(self, cmd: tuple[str, ...], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.cmd = cmd
        self.cwd = cwd
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        """Spawn the app; return its pid."""
        if not self.cwd.is_dir():
            raise ProvisionError(
                f"app folder {self.cwd} does not exist; fix --sandbox-app-cwd (or the ini key "
                "livesandbox_app_cwd)"
            )
        with open(self.log, "ab") as out:
            try:
                self.process = subprocess.Popen(
                    list(self.cmd),
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise AppCrashed(
                    f"could not start the app command {' '.join(self.cmd)!r}: {exc}. "
                    "Fix --sandbox-app-cmd (ini livesandbox_app_cmd)."
                ) from None
        return self.process.pid

    def ensure_alive(self) -> None:
        """Raise :class:`AppCrashed` with the app's last output if it has exited."""
        if self.process is None:
            return
        code = self.process.poll()
        exits = supervisor_state(self.log.parent).get("exits") or []
        if code is None and exits:
            code = exits[-1]["code"] if exits[-1]["code"] is not None else -exits[-1]["signal"]
        if code is not None:
            raise AppCrashed(
                f"the app exited with code {code} during start-up "
                f"(command: {' '.join(self.cmd)}).\nLast output:\n{tail(self.log)}\n"
                "Hint: run the command yourself with DATABASE_URL and PORT set to see why."
            )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the app's process group, SIGKILL it after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        terminate(process.pid, timeout, group=True)
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass

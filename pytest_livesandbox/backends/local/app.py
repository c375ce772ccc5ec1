"""The app under test as a supervised child process, its output appended to a log.

app = AppProcess(cmd, cwd, env, log=workdir / "app.log")
pid = app.start()
app.ensure_alive()        # AppCrashed with the last output once it exited
app.stop()                # SIGTERM its process group, SIGKILL after 5 s
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from ...errors import AppCrashed, ProvisionError
from ...logtail import probe_lines, tail
from ...processes import terminate
from .launcher import supervisor_state


class AppProcess:
    """The app under test as a child process in its own session, output appended to a log."""

    def __init__(
        self,
        cmd: tuple[str, ...],
        cwd: Path,
        env: dict[str, str],
        log: Path,
        user_cmd: tuple[str, ...] = (),
    ) -> None:
        self.cmd = cmd
        # What the user configured (``cmd`` may be it wrapped in the supervisor): shown in errors.
        self.user_cmd = user_cmd or cmd
        self.shown = shlex.join(self.user_cmd)
        self.cwd = cwd
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        #: The readiness probe's path: its access-log lines are left out of "Last output".
        self.probe_path = ""

    def start(self) -> int:
        """Spawn the app; return its pid."""
        if not self.cwd.is_dir():
            raise ProvisionError(
                f"app folder {self.cwd} does not exist; fix --sandbox-app-cwd (or the ini key "
                "livesandbox_app_cwd)"
            )
        problem = missing_program(self.user_cmd[0], self.cwd, self.env.get("PATH", ""))
        if problem:
            raise AppCrashed(
                f"could not start the app command: {problem} (command: {self.shown}). "
                "Fix --sandbox-app-cmd (ini livesandbox_app_cmd)."
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
                    f"could not start the app command: {exc} (command: {self.shown}). "
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
                f"(command: {self.shown}).\nLast output:\n{self.last_output()}\n"
                "Hint: run the command yourself with DATABASE_URL and PORT set to see why."
            )

    def last_output(self) -> str:
        """The app log's last lines, without the access-log lines of our readiness probe."""
        return tail(self.log, drop=probe_lines(self.probe_path))

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


def missing_program(program: str, cwd: Path, path: str) -> str:
    """Why ``program`` cannot be run (``"... not found"``, ``"... is not executable"``), or ``""``.

    >>> missing_program("no-such-binary-xyz", Path("/"), "/usr/bin")
    'no-such-binary-xyz: not found on PATH'
    """
    if "/" not in program:
        return "" if shutil.which(program, path=path) else f"{program}: not found on PATH"
    where = cwd / program
    if not where.exists():
        return f"{program}: not found (looked in {cwd})"
    if where.is_dir() or not os.access(where, os.X_OK):
        return f"{program}: is not an executable file"
    return ""

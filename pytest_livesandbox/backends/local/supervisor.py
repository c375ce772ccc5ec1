"""Keep the app running: restart it whenever it exits, like a Deployment's restartPolicy Always.

Standard library only, run by path by the local backend::

    python supervisor.py --state app.supervisor.json [--parent-pid N] \
        [--child-env LD_PRELOAD=/usr/lib/.../libfaketimeMT.so.1 ...] -- python app.py

The state file (rewritten atomically) holds the current child ``pid``, ``restarts`` and the last
``exits`` (``pid``, ``code``, ``signal``, ``at``), so any process can evict the app (SIGTERM the
child) and see it come back. SIGTERM or SIGINT to the supervisor stops the child (SIGTERM, then
SIGKILL after 5 s) and exits. ``--child-env`` settings go to the child only (the app's fake
clock: the supervisor itself never loads the preloaded library). The child shares the
supervisor's process group, so killing the group removes both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

STOP_GRACE_S = 5.0
POLL_S = 0.02
MAX_EXITS = 20


class Supervisor:
    """One child command, restarted with a short, capped backoff."""

    def __init__(
        self,
        cmd: list[str],
        state_file: str,
        parent_pid: int,
        child_env: dict[str, str] | None = None,
    ) -> None:
        self.cmd = cmd
        self.child_env = {**os.environ, **child_env} if child_env else None
        self.state_file = state_file
        self.parent_pid = parent_pid
        self.stopping = False
        self.restarts = 0
        self.exits: list[dict[str, Any]] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def write_state(self) -> None:
        """Publish the current child and exit history."""
        state = {
            "supervisor_pid": os.getpid(),
            "pid": self.child.pid if self.child else None,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "exits": self.exits[-MAX_EXITS:],
            "stopping": self.stopping,
        }
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(tmp, self.state_file)

    def spawn(self) -> None:
        """Start the child (it inherits our stdout/stderr: the app log)."""
        self.child = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, env=self.child_env)
        self.started_at = time.time()
        self.join_cgroups(self.child.pid)
        self.write_state()

    def join_cgroups(self, pid: int) -> None:
        """Move a new child into the cgroups listed in ``app.cgroups`` (a chaos limit in force).

        A container's limit outlives restarts; this is how a replacement app keeps it.
        """
        listing = os.path.join(os.path.dirname(os.path.abspath(self.state_file)), "app.cgroups")
        try:
            with open(listing, encoding="utf-8") as handle:
                paths = [line.strip() for line in handle if line.strip()]
        except OSError:
            return
        for path in paths:
            try:
                with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as procs:
                    procs.write(str(pid))
            except OSError:
                pass

    def on_signal(self, signum: int, frame: object) -> None:
        """Stop request: remember it; the loop does the work."""
        self.stopping = True

    def run(self) -> int:
        """Supervise until stopped."""
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.spawn()
        backoff = 0.05
        while not self.stopping:
            assert self.child is not None
            code = self.child.poll()
            if code is None:
                if self.parent_pid and not _alive(self.parent_pid):
                    self.stopping = True
                    break
                time.sleep(POLL_S)
                continue
            lived = time.time() - self.started_at
            self.exits.append(
                {
                    "pid": self.child.pid,
                    "code": code if code >= 0 else None,
                    "signal": -code if code < 0 else None,
                    "at": time.time(),
                    "lived_s": round(lived, 3),
                }
            )
            self.restarts += 1
            # A child that dies at once is crash-looping: back off (capped) like kubelet does.
            backoff = 0.05 if lived > 10 else min(backoff * 2, 2.0)
            self.child = None
            self.write_state()
            time.sleep(backoff)
            if not self.stopping:
                self.spawn()
        self.stop_child()
        self.write_state()
        return 0

    def stop_child(self) -> None:
        """SIGTERM the child, SIGKILL it after the grace period."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--child-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command after --")
    child_env = dict(item.split("=", 1) for item in args.child_env)
    return Supervisor(cmd, args.state, args.parent_pid, child_env).run()


if __name__ == "__main__":
    sys.exit(main())

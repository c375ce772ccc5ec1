"""Memory and CPU limits on the local app: a cgroup (v1) when we may make one, else an rlimit.

cgroup mode (root, a writable ``/sys/fs/cgroup/memory``): a child of the app's own cgroup gets
``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, so swap is no way out) or
``cpu.cfs_quota_us``; the app is moved in, and the supervisor moves every replacement in too
(``app.cgroups``), as a container's limit outlives restarts. Going over the memory limit gets the
app OOM-killed (``memory.oom_control`` counts it) and restarted.

rlimit mode (fallback, memory only): ``RLIMIT_AS`` on the running app, set to its current
address-space size plus ``memory``; a bigger allocation fails (``MemoryError``) instead of being
killed, and a restarted app runs without the limit. ``LIVESANDBOX_CHAOS_LIMITS=rlimit`` forces it::

    undo = apply_limits(workdir, app_pid, memory=96 * 2**20, cpu=None, name="ls-3f9c-1")
    ...
    effect = undo_limits(undo)     # {"oom_kills": 1, ...}
"""

from __future__ import annotations

import contextlib
import os
import resource
from functools import cache
from pathlib import Path
from typing import Any

from ...errors import ChaosError

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_LIST = "app.cgroups"  # read by the supervisor at each (re)start
CPU_PERIOD_US = 100_000


def forced_mode() -> str | None:
    """``cgroup`` or ``rlimit`` when forced by ``LIVESANDBOX_CHAOS_LIMITS``."""
    value = os.environ.get("LIVESANDBOX_CHAOS_LIMITS", "").strip().lower()
    return value if value in ("cgroup", "rlimit") else None


@cache
def cgroup_writable(controller: str) -> bool:
    """True if we can create a cgroup v1 under ``controller`` where this process lives."""
    if forced_mode() == "rlimit":
        return False
    try:
        base = _cgroup_dir(controller, os.getpid())
        probe = base / f"livesandbox-probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except (OSError, ChaosError):
        return False
    return True


def _cgroup_dir(controller: str, pid: int) -> Path:
    mount = CGROUP_ROOT / controller
    if not (mount / "cgroup.procs").exists():
        raise ChaosError(f"no cgroup v1 {controller} controller at {mount}")
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            candidate = mount / path.lstrip("/")
            # Inside a container the mount may already be our own cgroup.
            return candidate if candidate.is_dir() else mount
    return mount


def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise ChaosError(f"cannot read the address-space size of pid {pid}")


def apply_limits(
    workdir: Path, pid: int, *, memory: int | None, cpu: float | None, name: str
) -> dict[str, Any]:
    """Limit the app ``pid``; returns the undo record (JSON-able)."""
    use_cgroup = forced_mode() != "rlimit" and all(
        cgroup_writable(c) for c, v in (("memory", memory), ("cpu", cpu)) if v is not None
    )
    if not use_cgroup:
        if cpu is not None:
            raise ChaosError("a cpu limit needs a writable cgroup (run as root on cgroup v1)")
        assert memory is not None
        soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        limit = _vm_size(pid) + memory
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, hard))
        return {"mode": "rlimit", "pid": pid, "previous": [soft, hard], "limit": limit}
    groups: list[dict[str, str]] = []
    try:
        for controller, value in (("memory", memory), ("cpu", cpu)):
            if value is None:
                continue
            parent = _cgroup_dir(controller, pid)
            path = parent / name
            path.mkdir(exist_ok=True)
            groups.append({"path": str(path), "parent": str(parent)})
            if controller == "memory":
                (path / "memory.limit_in_bytes").write_text(str(int(value)))
                memsw = path / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    memsw.write_text(str(int(value)))
            else:
                (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(int(float(value) * CPU_PERIOD_US)))
            (path / "cgroup.procs").write_text(str(pid))
        (workdir / CGROUP_LIST).write_text("".join(g["path"] + "\n" for g in groups))
    except OSError as exc:
        undo_limits({"mode": "cgroup", "groups": groups, "workdir": str(workdir)})
        raise ChaosError(f"could not set up the cgroup limit: {exc}") from None
    return {"mode": "cgroup", "groups": groups, "workdir": str(workdir), "limit": memory}


def undo_limits(undo: dict[str, Any]) -> dict[str, Any]:
    """Lift the limit; returns what it did to the app (``oom_kills``, ``failcnt``)."""
    if undo.get("mode") == "rlimit":
        try:
            resource.prlimit(int(undo["pid"]), resource.RLIMIT_AS, tuple(undo["previous"]))
        except ProcessLookupError:
            pass  # the app is gone; its replacement never had the limit
        return {"mode": "rlimit"}
    effect: dict[str, Any] = {"mode": "cgroup"}
    with contextlib.suppress(OSError):
        (Path(undo["workdir"]) / CGROUP_LIST).unlink(missing_ok=True)
    for group in undo.get("groups", []):
        path, parent = Path(group["path"]), Path(group["parent"])
        if not path.is_dir():
            continue
        oom = path / "memory.oom_control"
        if oom.exists():
            for line in oom.read_text().splitlines():
                if line.startswith("oom_kill "):
                    effect["oom_kills"] = int(line.split()[1])
            effect["failcnt"] = int((path / "memory.failcnt").read_text())
            effect["max_usage_bytes"] = int((path / "memory.max_usage_in_bytes").read_text())
        stat = path / "cpu.stat"
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines())
            effect["cpu_throttled_periods"] = int(fields.get("nr_throttled", 0))
            effect["cpu_throttled_s"] = round(int(fields.get("throttled_time", 0)) / 1e9, 3)
        for _ in range(50):
            pids = (path / "cgroup.procs").read_text().split()
            for pid in pids:
                try:
                    (parent / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # exited meanwhile
            try:
                path.rmdir()
                break
            except OSError:
                continue
        else:
            raise ChaosError(f"could not remove the cgroup {path}: processes still inside")
    return effect


def remove_sandbox_cgroups(sandbox_id: str) -> list[str]:
    """Remove every chaos cgroup of a sandbox (teardown and ``livesandbox gc`` after a crash).

    Processes still inside are moved to the parent cgroup first; returns the removed paths.
    """
    removed = []
    for path in _sandbox_cgroups(sandbox_id):
        if not path.is_dir():
            continue
        undo_limits(
            {
                "mode": "cgroup",
                "groups": [{"path": str(path), "parent": str(path.parent)}],
                "workdir": str(path),
            }
        )
        removed.append(str(path))
    return removed


def _sandbox_cgroups(sandbox_id: str) -> list[Path]:
    """The sandbox's cgroups at any depth under any controller.

    os.walk, not Path.glob("*/**/..."): the walk crosses other workloads' cgroups (a local
    Kubernetes' kubepods), which may vanish mid-walk; glob then raised FileNotFoundError out of
    teardown, os.walk skips them.
    """
    prefix = f"livesandbox-{sandbox_id}-"
    found: list[Path] = []
    controllers = [p for p in CGROUP_ROOT.iterdir() if p.is_dir()] if CGROUP_ROOT.is_dir() else []
    for controller in controllers:
        for folder, names, _ in os.walk(controller):
            found.extend(Path(folder) / n for n in names if n.startswith(prefix))
    return sorted(found)


def limited(undo: dict[str, Any]) -> bool:
    """True while the limit recorded in ``undo`` is still in force."""
    if undo.get("mode") == "rlimit":
        try:
            soft = resource.prlimit(int(undo["pid"]), resource.RLIMIT_AS)[0]
            return bool(soft == undo["limit"])
        except ProcessLookupError:
            return False
    return any(Path(g["path"]).is_dir() for g in undo.get("groups", []))

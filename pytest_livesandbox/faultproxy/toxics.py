"""What a fault is on the proxy: :class:`Toxic`, and how a control request makes one.

Standard library only (the proxy runs by path, in a container or pod as well)::

    toxic, error = make_toxic({"kind": "latency", "params": {"ms": 100}}, protocol="tcp")
    assert error == "" and toxic.applies("upstream")
"""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

if __package__:
    from . import http1
else:  # run by path (``python -I -S server.py``): the siblings are top-level modules
    import http1  # type: ignore[no-redef,import-not-found]

KINDS = ("latency", "reset", "timeout", "bandwidth", "slow_close", "http")
DIRECTIONS = ("both", "upstream", "downstream")
_ids = itertools.count(1)


@dataclass
class Toxic:
    """One fault on a route."""

    kind: str
    direction: str
    params: dict[str, Any]
    owner: str = ""
    owner_pid: int = 0
    expires_at: float = 0.0
    scope: str = ""  # "" acts on all traffic; else only on requests carrying this test scope
    id: str = field(default_factory=lambda: f"t{next(_ids)}")
    created_at: float = field(default_factory=time.time)
    hits: int = 0  # connections (tcp) or requests (http) the toxic acted on
    seen: int = 0  # requests it matched (http toxics)
    unparsed_before: int = 0  # the route's unparsed connections when the toxic was added
    rng: random.Random | None = None

    def applies(self, direction: str) -> bool:
        """True if the toxic acts on data flowing in ``direction``."""
        return self.direction in ("both", direction)

    def stale(self, now: float) -> bool:
        """Expired, or its owning process is gone."""
        if self.expires_at and now >= self.expires_at:
            return True
        return bool(self.owner_pid) and not pid_alive(self.owner_pid)

    def to_json(self) -> dict[str, Any]:
        """The toxic as the control API shows it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "direction": self.direction,
            "params": self.params,
            "owner": self.owner,
            "owner_pid": self.owner_pid,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "scope": self.scope,
            "hits": self.hits,
            "requests_seen": self.seen,
        }


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def make_toxic(body: dict[str, Any], protocol: str) -> tuple[Toxic | None, str]:
    """The toxic a ``POST /routes/<name>/toxics`` body asks for, or why there is none."""
    kind, direction = body.get("kind"), body.get("direction", "both")
    if kind not in KINDS or direction not in DIRECTIONS:
        return None, f"kind must be one of {KINDS}, direction one of {DIRECTIONS}"
    raw = dict(body.get("params") or {})
    scope = str(body.get("scope") or "")
    if (kind == "http" or scope) and protocol != "http":
        return None, "not an http route (needed for kind http and for scope)"
    try:
        params = raw if kind == "http" else {str(k): float(v) for k, v in raw.items()}
        problem = http1.validate(params) if kind == "http" else ""
    except (TypeError, ValueError) as exc:
        problem = f"bad params: {exc}"
    if not problem and kind == "latency" and "ms" not in params:
        problem = "latency needs params.ms"
    if not problem and kind == "bandwidth" and params.get("rate_kbps", 0) <= 0:
        problem = "bandwidth needs params.rate_kbps > 0"
    if problem:
        return None, problem
    ttl = float(body.get("ttl_s") or 0)
    toxic = Toxic(
        kind=str(kind),
        direction=str(direction),
        params=params,
        owner=str(body.get("owner", "")),
        owner_pid=int(body.get("owner_pid") or 0),
        expires_at=time.time() + ttl if ttl else 0.0,
        scope=scope,
    )
    return toxic, ""

"""Chaos markers: their arguments, units and validation, parsed into a :class:`ChaosPlan`.

Parsing happens once per test at collection; a bad argument is a collection error naming the test
and the argument, before anything runs::

    plan = plan_from_markers([("latency", (300,), {"target": "db"})])
    assert plan.faults[0].params == {"ms": 300.0, "jitter": 0.0, "direction": "both"}

Units. A parameter whose *name* carries the unit takes a plain number: ``ms`` and ``jitter``
(milliseconds), ``rate_kbps`` (kilobits per second, 1 kbps = 125 bytes/s), ``after_bytes``,
``max``. A duration whose name carries no unit (``delay``, ``down_for``, ``after``) takes
``"500ms"``, ``"1.5s"``, ``"2m"``, or a bare number of seconds, parsed by the same function as
every duration option (:func:`~pytest_livesandbox.config.parse_duration`). ``memory`` needs a
unit (``"96Mi"``, ``"1Gi"``, ``"100M"``); ``cpu`` follows Kubernetes: ``"500m"`` (millicores)
or a number of cores (``0.5``). A clock ``offset`` needs a sign-optional number and a unit
(``"+1h"``, ``"-30m"``, ``"+90s"``, ``"+2d"``); ``rate`` is a plain factor (``60``: an hour a
minute).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MarkerError
from .units import (
    boolean,
    choice,
    number,
    parse_chaos_duration,
    parse_cpu,
    parse_memory,
    parse_offset,
)

TARGETS = ("db", "app")
DIRECTIONS = ("both", "upstream", "downstream")
WHENS = ("before", "during")
COMPONENTS = ("backend",)
NETWORK_KINDS = ("reset", "timeout", "bandwidth", "slow_close")
MARKER_NAMES = (
    "latency",
    "network_fault",
    "evict_pod",
    "resource_limits",
    "db_connections",
    "kill_db",
    "http_fault",
    "clock",
)
#: Faults on the client -> app path: scoped to the test's own requests, no exclusive lock.
SCOPED_KINDS = frozenset({"latency", "reset", "timeout", "bandwidth", "slow_close", "http"})
#: Faults that count what they affected (``hits``) and so can be checked to have fired.
COUNTED_KINDS = SCOPED_KINDS
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

MARKER_HELP = (
    "latency(ms, jitter=0, target='db'|'app', direction='both'|'upstream'|'downstream'): "
    "add ms milliseconds to each request/response exchange through the fault proxy",
    "network_fault(kind='reset'|'timeout'|'bandwidth'|'slow_close', target='db'|'app', "
    "direction=..., after_bytes=, after='2s', rate_kbps=, delay='1s'): a broken network",
    "evict_pod(component='backend', when='before'|'during', delay='0.5s'): stop the app "
    "(SIGTERM / Eviction API); it is restarted and must become Ready again",
    "resource_limits(component='backend', memory='96Mi', cpu='500m'): run the app under "
    "memory / CPU limits for the test",
    "db_connections(max=N): the app's database role may hold at most N connections",
    "kill_db(when='before'|'during', delay='0s', restart=True, down_for='1s'): stop "
    "PostgreSQL; with restart=True it comes back after down_for",
    "http_fault(status=503, body=, retry_after='2s' | abort=True | delay='200ms', times=N, "
    "every=K | rate=0.3, seed=0, path='/items*', method='POST', target='app', "
    "require_hit=True): answer, reset or hold back the test's own matching HTTP requests",
    "clock(offset='+1h', rate=1, when='before'|'during', delay='0s'): move the app's clock "
    "(only the app's: not the tests', not PostgreSQL's) by offset and/or run it rate times "
    "as fast",
)
MAX_CLOCK_RATE = 10_000.0


@dataclass(frozen=True)
class Fault:
    """One fault to inject: what, where, with which parameters, and when.

    ``kind`` is one of ``latency``, ``reset``, ``timeout``, ``bandwidth``, ``slow_close``,
    ``evict``, ``resource_limits``, ``db_connections``, ``kill_db``, ``http``, ``clock``.
    ``target`` is ``db`` or ``app`` for network faults, ``backend`` for process faults (and the
    clock) and ``db`` for database faults.
    Durations are seconds, sizes bytes.
    """

    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    when: str = "before"
    delay: float = 0.0
    marker: str = ""
    require_hit: bool = True

    @property
    def scoped(self) -> bool:
        """A client -> app fault: it acts on the requests of the test that asked for it only."""
        return self.kind in SCOPED_KINDS and self.target == "app"

    @property
    def counted(self) -> bool:
        """The fault reports ``hits``; with ``require_hit`` zero hits is an error."""
        return self.kind in COUNTED_KINDS

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports."""
        return {
            "kind": self.kind,
            "target": self.target,
            "params": dict(self.params),
            "when": self.when,
            "delay_s": self.delay,
            "marker": self.marker,
            "require_hit": self.require_hit,
        }


@dataclass(frozen=True)
class ChaosPlan:
    """The faults a test asked for through markers, in marker order (closest first)."""

    faults: tuple[Fault, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.faults)

    @property
    def kinds(self) -> frozenset[str]:
        """The fault kinds used (for capability checks)."""
        return frozenset(f.kind for f in self.faults)


# --------------------------------------------------------------------------- markers


Args = tuple[Any, ...]
Kwargs = Mapping[str, Any]


def _bind(
    marker: str, args: Args, kwargs: Kwargs, positional: tuple[str, ...], allowed: set[str]
) -> dict[str, Any]:
    """Map positional args onto names and refuse unknown keywords (naming them)."""
    if len(args) > len(positional):
        raise MarkerError(
            f"@{marker}: takes at most {len(positional)} positional argument(s) "
            f"({', '.join(positional) or 'none'}); got {len(args)}"
        )
    bound = dict(zip(positional, args, strict=False))
    for key, value in kwargs.items():
        if key not in allowed:
            raise MarkerError(
                f"@{marker}: unknown argument {key!r}; known: {', '.join(sorted(allowed))}"
            )
        if key in bound:
            raise MarkerError(f"@{marker}: argument {key!r} given twice")
        bound[key] = value
    return bound


def _when_delay(marker: str, bound: dict[str, Any]) -> tuple[str, float]:
    when = choice(bound.get("when", "before"), "when", WHENS)
    delay = parse_chaos_duration(bound.get("delay", "0s"), "delay")
    if delay and when == "before":
        raise MarkerError(f"@{marker}: delay only applies with when='during'")
    return when, delay


def _latency(args: Args, kwargs: Kwargs) -> list[Fault]:
    allowed = {"ms", "jitter", "target", "direction", "require_hit"}
    bound = _bind("latency", args, kwargs, ("ms",), allowed)
    if "ms" not in bound:
        raise MarkerError("@latency: argument 'ms' is required, e.g. @latency(ms=300)")
    ms = number(bound["ms"], "ms")
    jitter = number(bound.get("jitter", 0), "jitter")
    if jitter > ms:
        raise MarkerError(f"jitter={jitter:g} must not exceed ms={ms:g}")
    params = {
        "ms": ms,
        "jitter": jitter,
        "direction": choice(bound.get("direction", "both"), "direction", DIRECTIONS),
    }
    target = choice(bound.get("target", "db"), "target", TARGETS)
    require = boolean(bound.get("require_hit", True), "require_hit")
    return [Fault("latency", target, params, marker="latency", require_hit=require)]


_NETWORK_PARAMS: dict[str, set[str]] = {
    "reset": {"after_bytes"},
    "timeout": {"after"},
    "bandwidth": {"rate_kbps"},
    "slow_close": {"delay"},
}


def _network_fault(args: Args, kwargs: Kwargs) -> list[Fault]:
    extra = set().union(*_NETWORK_PARAMS.values())
    allowed = {"kind", "target", "direction", "require_hit", *extra}
    bound = _bind("network_fault", args, kwargs, ("kind",), allowed)
    if "kind" not in bound:
        raise MarkerError("@network_fault: argument 'kind' is required, e.g. kind='reset'")
    kind = choice(bound["kind"], "kind", NETWORK_KINDS)
    for key in extra - _NETWORK_PARAMS[kind]:
        if key in bound:
            raise MarkerError(f"{key}={bound[key]!r} does not apply to kind={kind!r}")
    params: dict[str, Any] = {
        "direction": choice(bound.get("direction", "both"), "direction", DIRECTIONS)
    }
    if kind == "reset":
        params["after_bytes"] = int(
            number(bound.get("after_bytes", 0), "after_bytes", integer=True)
        )
    elif kind == "timeout":
        if "after" in bound:
            params["after"] = parse_chaos_duration(bound["after"], "after", allow_zero=False)
    elif kind == "bandwidth":
        if "rate_kbps" not in bound:
            raise MarkerError("kind='bandwidth' needs rate_kbps=, e.g. rate_kbps=64")
        params["rate_kbps"] = number(bound["rate_kbps"], "rate_kbps")
        if params["rate_kbps"] <= 0:
            raise MarkerError("rate_kbps must be > 0 (use kind='timeout' to stop traffic)")
    else:
        params["delay"] = parse_chaos_duration(bound.get("delay", "1s"), "delay")
    target = choice(bound.get("target", "db"), "target", TARGETS)
    require = boolean(bound.get("require_hit", True), "require_hit")
    return [Fault(kind, target, params, marker="network_fault", require_hit=require)]


def _evict_pod(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("evict_pod", args, kwargs, ("component",), {"component", "when", "delay"})
    component = choice(bound.get("component", "backend"), "component", COMPONENTS)
    when, delay = _when_delay("evict_pod", bound)
    return [Fault("evict", component, {}, when=when, delay=delay, marker="evict_pod")]


def _resource_limits(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("resource_limits", args, kwargs, ("component",), {"component", "memory", "cpu"})
    component = choice(bound.get("component", "backend"), "component", COMPONENTS)
    params: dict[str, Any] = {}
    if "memory" in bound:
        params["memory"] = parse_memory(bound["memory"])
    if "cpu" in bound:
        params["cpu"] = parse_cpu(bound["cpu"])
    if not params:
        raise MarkerError("@resource_limits: give memory= and/or cpu=, e.g. memory='96Mi'")
    return [Fault("resource_limits", component, params, marker="resource_limits")]


def _db_connections(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("db_connections", args, kwargs, ("max",), {"max"})
    if "max" not in bound:
        raise MarkerError("@db_connections: argument 'max' is required, e.g. max=1")
    limit = int(number(bound["max"], "max", integer=True))
    return [Fault("db_connections", "db", {"max": limit}, marker="db_connections")]


def _kill_db(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("kill_db", args, kwargs, (), {"when", "delay", "restart", "down_for"})
    when, delay = _when_delay("kill_db", bound)
    restart = boolean(bound.get("restart", True), "restart")
    if "down_for" in bound and not restart:
        raise MarkerError("down_for only applies with restart=True")
    down_for = parse_chaos_duration(bound.get("down_for", "1s"), "down_for")
    params = {"restart": restart, "down_for": down_for if restart else None}
    return [Fault("kill_db", "db", params, when=when, delay=delay, marker="kill_db")]


_HTTP_ALLOWED = {
    "status", "body", "retry_after", "abort", "delay", "times", "every", "rate", "seed",
    "path", "method", "target", "require_hit",
}  # fmt: skip


def _http_fault(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("http_fault", args, kwargs, ("status",), _HTTP_ALLOWED)
    actions = [key for key in ("status", "abort", "delay") if key in bound]
    if len(actions) > 1:
        raise MarkerError(f"give one of status=, abort=True, delay=; got {', '.join(actions)}")
    params: dict[str, Any] = {"action": actions[0] if actions else "status"}
    if params["action"] == "status":
        params["status"] = int(number(bound.get("status", 503), "status", integer=True))
        if not 200 <= params["status"] <= 599 or params["status"] in (204, 304):
            raise MarkerError(f"status={params['status']} must be 200..599 (not 204/304)")
        if "body" in bound:
            if not isinstance(bound["body"], str):
                raise MarkerError(f"body={bound['body']!r} must be a string")
            params["body"] = bound["body"]
        if "retry_after" in bound:
            seconds = parse_chaos_duration(bound["retry_after"], "retry_after")
            if seconds != int(seconds):
                raise MarkerError(f"retry_after={bound['retry_after']!r}: whole seconds only")
            params["retry_after"] = int(seconds)
    else:
        for key in ("body", "retry_after"):
            if key in bound:
                raise MarkerError(f"{key}= only applies with status=")
    if params["action"] == "abort" and not boolean(bound["abort"], "abort"):
        raise MarkerError("abort=False injects nothing; drop the marker or give abort=True")
    if params["action"] == "delay":
        params["delay"] = parse_chaos_duration(bound["delay"], "delay", allow_zero=False)
    if "times" in bound:
        params["times"] = int(number(bound["times"], "times", minimum=1, integer=True))
    if "every" in bound and "rate" in bound:
        raise MarkerError("give every= or rate=, not both")
    if "every" in bound:
        params["every"] = int(number(bound["every"], "every", minimum=1, integer=True))
    if "rate" in bound:
        params["rate"] = number(bound["rate"], "rate")
        if not 0 < params["rate"] <= 1:
            raise MarkerError(f"rate={bound['rate']!r} must be a fraction in (0, 1]")
        params["seed"] = int(number(bound.get("seed", 0), "seed", integer=True))
    elif "seed" in bound:
        raise MarkerError("seed= only applies with rate=")
    if "path" in bound:
        if not isinstance(bound["path"], str) or not bound["path"].startswith("/"):
            raise MarkerError(f"path={bound['path']!r} must be a glob starting with '/'")
        params["path"] = bound["path"]
    if "method" in bound:
        given = bound["method"]
        methods = [given] if isinstance(given, str) else given
        if not isinstance(methods, list | tuple) or not methods:
            raise MarkerError(f"method={given!r} must be a method name or a list of them")
        params["method"] = [choice(str(m).upper(), "method", HTTP_METHODS) for m in methods]
    if bound.get("target", "app") != "app":
        raise MarkerError(
            f"target={bound['target']!r}: http_fault acts on HTTP requests to the app; "
            "only target='app' (for the database use latency / network_fault)"
        )
    require = boolean(bound.get("require_hit", True), "require_hit")
    return [Fault("http", "app", params, marker="http_fault", require_hit=require)]


def _clock(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("clock", args, kwargs, ("offset",), {"offset", "rate", "when", "delay"})
    if "offset" not in bound and "rate" not in bound:
        raise MarkerError("@clock: give offset= and/or rate=, e.g. offset='+1h' or rate=60")
    offset = parse_offset(bound["offset"]) if "offset" in bound else 0.0
    rate = number(bound.get("rate", 1), "rate")
    if not 0 < rate <= MAX_CLOCK_RATE:
        raise MarkerError(f"rate={rate:g} must be > 0 and <= {MAX_CLOCK_RATE:g}")
    when, delay = _when_delay("clock", bound)
    params = {"offset_s": offset, "rate": rate}
    return [Fault("clock", "backend", params, when=when, delay=delay, marker="clock")]


PARSERS: dict[str, Callable[[Args, Kwargs], list[Fault]]] = {
    "http_fault": _http_fault,
    "latency": _latency,
    "network_fault": _network_fault,
    "evict_pod": _evict_pod,
    "resource_limits": _resource_limits,
    "db_connections": _db_connections,
    "kill_db": _kill_db,
    "clock": _clock,
}


def parse_marker(name: str, args: Args, kwargs: Kwargs) -> list[Fault]:
    """The faults one chaos marker asks for; raises :class:`MarkerError` naming the argument."""
    return PARSERS[name](tuple(args), kwargs)


def plan_from_markers(markers: Iterable[tuple[str, Args, Kwargs]]) -> ChaosPlan:
    """Parse ``(name, args, kwargs)`` triples (non-chaos names are ignored) into a plan."""
    faults: list[Fault] = []
    for name, args, kwargs in markers:
        if name in PARSERS:
            try:
                faults.extend(parse_marker(name, args, kwargs))
            except MarkerError as exc:
                text = str(exc)
                raise MarkerError(text if text.startswith("@") else f"@{name}: {text}") from None
    return ChaosPlan(tuple(faults))

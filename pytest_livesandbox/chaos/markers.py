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
or a number of cores (``0.5``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import parse_duration
from ..errors import MarkerError

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
)

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
)

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|K|M|G)\s*$")
_MEMORY_FACTORS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}
_CPU = re.compile(r"^\s*(\d+)m\s*$")


@dataclass(frozen=True)
class Fault:
    """One fault to inject: what, where, with which parameters, and when.

    ``kind`` is one of ``latency``, ``reset``, ``timeout``, ``bandwidth``, ``slow_close``,
    ``evict``, ``resource_limits``, ``db_connections``, ``kill_db``. ``target`` is ``db`` or
    ``app`` for network faults, ``backend`` for process faults and ``db`` for database faults.
    Durations are seconds, sizes bytes.
    """

    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    when: str = "before"
    delay: float = 0.0
    marker: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports."""
        return {
            "kind": self.kind,
            "target": self.target,
            "params": dict(self.params),
            "when": self.when,
            "delay_s": self.delay,
            "marker": self.marker,
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


# --------------------------------------------------------------------------- value parsers


def parse_chaos_duration(value: object, name: str, *, allow_zero: bool = True) -> float:
    """A marker's duration argument, by the one parser of :func:`~..config.parse_duration`.

    >>> parse_chaos_duration("250ms", "delay"), parse_chaos_duration(2, "down_for")
    (0.25, 2.0)
    """
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        raise MarkerError(f"{name}={value!r}: {exc}") from None


def parse_memory(value: object, name: str = "memory") -> int:
    """A memory size with a unit (``"96Mi"``, ``"1Gi"``, ``"100M"``) -> bytes.

    >>> parse_memory("96Mi")
    100663296
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise MarkerError(
            f"{name}={value!r}: give a size with a unit, e.g. {name}='96Mi' (bytes are ambiguous)"
        )
    match = _MEMORY.match(value)
    if not match:
        raise MarkerError(
            f"{name}={value!r} is not a memory size; use Ki, Mi, Gi (or K, M, G), e.g. '96Mi'"
        )
    size = int(float(match.group(1)) * _MEMORY_FACTORS[match.group(2)])
    if size < 4 * 1024 * 1024:
        raise MarkerError(f"{name}={value!r} is below 4Mi, which no process can run in")
    return size


def parse_cpu(value: object, name: str = "cpu") -> float:
    """CPU as Kubernetes writes it: ``"500m"`` or a number of cores -> cores.

    >>> parse_cpu("250m"), parse_cpu(1.5)
    (0.25, 1.5)
    """
    if isinstance(value, bool):
        raise MarkerError(f"{name}={value!r} is not a CPU amount; use e.g. '500m' or 0.5")
    if isinstance(value, int | float):
        cores = float(value)
    elif isinstance(value, str) and _CPU.match(value):
        cores = int(_CPU.match(value).group(1)) / 1000  # type: ignore[union-attr]
    else:
        raise MarkerError(f"{name}={value!r} is not a CPU amount; use e.g. '500m' or 0.5")
    if cores < 0.01:
        raise MarkerError(f"{name}={value!r} must be at least 10m")
    return cores


def _number(value: object, name: str, *, minimum: float = 0.0, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        unit_hint = "" if integer else " (the unit is in the name)"
        raise MarkerError(f"{name}={value!r} must be a number{unit_hint}")
    if integer and not isinstance(value, int):
        raise MarkerError(f"{name}={value!r} must be a whole number")
    if value < minimum:
        raise MarkerError(f"{name}={value!r} must be >= {minimum:g}")
    return float(value)


def _choice(value: object, name: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise MarkerError(f"{name}={value!r} is not one of {', '.join(map(repr, options))}")
    return str(value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise MarkerError(f"{name}={value!r} must be True or False")
    return value


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
    when = _choice(bound.get("when", "before"), "when", WHENS)
    delay = parse_chaos_duration(bound.get("delay", "0s"), "delay")
    if delay and when == "before":
        raise MarkerError(f"@{marker}: delay only applies with when='during'")
    return when, delay


def _latency(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("latency", args, kwargs, ("ms",), {"ms", "jitter", "target", "direction"})
    if "ms" not in bound:
        raise MarkerError("@latency: argument 'ms' is required, e.g. @latency(ms=300)")
    ms = _number(bound["ms"], "ms")
    jitter = _number(bound.get("jitter", 0), "jitter")
    if jitter > ms:
        raise MarkerError(f"jitter={jitter:g} must not exceed ms={ms:g}")
    params = {
        "ms": ms,
        "jitter": jitter,
        "direction": _choice(bound.get("direction", "both"), "direction", DIRECTIONS),
    }
    target = _choice(bound.get("target", "db"), "target", TARGETS)
    return [Fault("latency", target, params, marker="latency")]


_NETWORK_PARAMS: dict[str, set[str]] = {
    "reset": {"after_bytes"},
    "timeout": {"after"},
    "bandwidth": {"rate_kbps"},
    "slow_close": {"delay"},
}


def _network_fault(args: Args, kwargs: Kwargs) -> list[Fault]:
    extra = set().union(*_NETWORK_PARAMS.values())
    bound = _bind("network_fault", args, kwargs, ("kind",), {"kind", "target", "direction", *extra})
    if "kind" not in bound:
        raise MarkerError("@network_fault: argument 'kind' is required, e.g. kind='reset'")
    kind = _choice(bound["kind"], "kind", NETWORK_KINDS)
    for key in extra - _NETWORK_PARAMS[kind]:
        if key in bound:
            raise MarkerError(f"{key}={bound[key]!r} does not apply to kind={kind!r}")
    params: dict[str, Any] = {
        "direction": _choice(bound.get("direction", "both"), "direction", DIRECTIONS)
    }
    if kind == "reset":
        params["after_bytes"] = int(
            _number(bound.get("after_bytes", 0), "after_bytes", integer=True)
        )
    elif kind == "timeout":
        if "after" in bound:
            params["after"] = parse_chaos_duration(bound["after"], "after", allow_zero=False)
    elif kind == "bandwidth":
        if "rate_kbps" not in bound:
            raise MarkerError("kind='bandwidth' needs rate_kbps=, e.g. rate_kbps=64")
        params["rate_kbps"] = _number(bound["rate_kbps"], "rate_kbps")
        if params["rate_kbps"] <= 0:
            raise MarkerError("rate_kbps must be > 0 (use kind='timeout' to stop traffic)")
    else:
        params["delay"] = parse_chaos_duration(bound.get("delay", "1s"), "delay")
    target = _choice(bound.get("target", "db"), "target", TARGETS)
    return [Fault(kind, target, params, marker="network_fault")]


def _evict_pod(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("evict_pod", args, kwargs, ("component",), {"component", "when", "delay"})
    component = _choice(bound.get("component", "backend"), "component", COMPONENTS)
    when, delay = _when_delay("evict_pod", bound)
    return [Fault("evict", component, {}, when=when, delay=delay, marker="evict_pod")]


def _resource_limits(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("resource_limits", args, kwargs, ("component",), {"component", "memory", "cpu"})
    component = _choice(bound.get("component", "backend"), "component", COMPONENTS)
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
    limit = int(_number(bound["max"], "max", integer=True))
    return [Fault("db_connections", "db", {"max": limit}, marker="db_connections")]


def _kill_db(args: Args, kwargs: Kwargs) -> list[Fault]:
    bound = _bind("kill_db", args, kwargs, (), {"when", "delay", "restart", "down_for"})
    when, delay = _when_delay("kill_db", bound)
    restart = _bool(bound.get("restart", True), "restart")
    if "down_for" in bound and not restart:
        raise MarkerError("down_for only applies with restart=True")
    down_for = parse_chaos_duration(bound.get("down_for", "1s"), "down_for")
    params = {"restart": restart, "down_for": down_for if restart else None}
    return [Fault("kill_db", "db", params, when=when, delay=delay, marker="kill_db")]


PARSERS: dict[str, Callable[[Args, Kwargs], list[Fault]]] = {
    "latency": _latency,
    "network_fault": _network_fault,
    "evict_pod": _evict_pod,
    "resource_limits": _resource_limits,
    "db_connections": _db_connections,
    "kill_db": _kill_db,
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

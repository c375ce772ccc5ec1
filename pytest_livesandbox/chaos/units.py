"""Argument values of the chaos markers: durations, sizes, CPU, numbers, choices, booleans.

Each parser raises :class:`~pytest_livesandbox.errors.MarkerError` naming the argument::

    parse_chaos_duration("250ms", "delay")   # 0.25
    number(3, "times", minimum=1, integer=True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..config import parse_duration
from ..errors import MarkerError

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|K|M|G)\s*$")
_MEMORY_FACTORS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}
_CPU = re.compile(r"^\s*(\d+)m\s*$")
_OFFSET = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_OFFSET_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


def parse_offset(value: object, name: str = "offset") -> float:
    """A clock offset with a unit (``"+1h"``, ``"-30m"``, ``"+90s"``, ``"2d"``) -> seconds.

    >>> parse_offset("+1h"), parse_offset("-1.5m")
    (3600.0, -90.0)
    """
    text = value if isinstance(value, str) else ""
    match = _OFFSET.match(text)
    if not match:
        bare = isinstance(value, int | float) and not isinstance(value, bool)
        bare = bare or bool(re.match(r"^\s*[+-]?\d+(\.\d+)?\s*$", text))
        why = "has no unit" if bare else "is not a clock offset"
        raise MarkerError(
            f"{name}={value!r} {why}; give a signed number with s, m, h or d, e.g. '+1h' or '-30m'"
        )
    sign = -1.0 if match.group(1) == "-" else 1.0
    return sign * float(match.group(2)) * _OFFSET_FACTORS[match.group(3)]


def number(value: object, name: str, *, minimum: float = 0.0, integer: bool = False) -> float:
    """A plain number (the unit is in the argument's name), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        unit_hint = "" if integer else " (the unit is in the name)"
        raise MarkerError(f"{name}={value!r} must be a number{unit_hint}")
    if integer and not isinstance(value, int):
        raise MarkerError(f"{name}={value!r} must be a whole number")
    if value < minimum:
        raise MarkerError(f"{name}={value!r} must be >= {minimum:g}")
    return float(value)


def choice(value: object, name: str, choices: Iterable[str]) -> str:
    """One of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise MarkerError(f"{name}={value!r} is not one of {', '.join(map(repr, options))}")
    return str(value)


def boolean(value: object, name: str) -> bool:
    """``True`` or ``False`` (not 0/1)."""
    if not isinstance(value, bool):
        raise MarkerError(f"{name}={value!r} must be True or False")
    return value

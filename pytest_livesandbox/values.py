"""Parsers of option and marker values: durations, booleans, ``KEY=VALUE`` pairs, commands.

One parser per kind of value, shared by the option table (:mod:`.config`), the chaos markers and
the CLI, so ``30s`` means the same everywhere::

    parse_duration("1.5s"), parse_bool("yes"), split_command("{python} -m app")
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from collections.abc import Sequence

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 7 * 24 * 3600.0  # a week: anything longer is a typo, not a timeout
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """The one duration parser (options, markers, CLI): ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``.

    A bare number (``30``, ``"30"``, ``1.5``) means seconds, as in pytest-timeout. NaN,
    infinities, negative values and more than a week are refused.

    >>> parse_duration("1.5s"), parse_duration("250ms"), parse_duration("2m"), parse_duration(3)
    (1.5, 0.25, 120.0, 3.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 500ms or 2m")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 500ms or 2m")
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 500ms or 2m")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds == 0 and not allow_zero:
        raise ValueError(f"{value!r} must be longer than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than a week; use e.g. 30s, 500ms or 2m")
    return seconds


def parse_bool(text: str) -> bool:
    """Parse the usual spellings of a boolean (``1/0``, ``true/false``, ``yes/no``, ``on/off``)."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; use true or false")


def parse_env_pairs(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Parse ``KEY=VALUE`` items; a key must be a valid environment variable name."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{item!r} is not KEY=VALUE")
        pairs.append((key, value))
    return tuple(pairs)


def parse_image_overrides(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Parse ``COMPONENT=IMAGE`` items, e.g. ``app=myapp:dev``.

    >>> parse_image_overrides(["backend=registry.example.com/app:1.2"])
    (('backend', 'registry.example.com/app:1.2'),)
    """
    pairs = []
    for item in items:
        component, sep, image = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", component) or not image:
            raise ValueError(f"{item!r} is not COMPONENT=IMAGE (e.g. app=myapp:dev)")
        pairs.append((component, image))
    return tuple(pairs)


_COMPONENT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_build_specs(items: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """Parse ``COMPONENT=PATH[:DOCKERFILE]`` items into ``(component, path, dockerfile)``.

    The Dockerfile is relative to the context folder (default ``Dockerfile``); a component is
    built once.

    >>> parse_build_specs(["backend=examples/demo_app", "worker=.:docker/Dockerfile.worker"])
    (('backend', 'examples/demo_app', 'Dockerfile'), ('worker', '.', 'docker/Dockerfile.worker'))
    """
    specs: list[tuple[str, str, str]] = []
    for item in items:
        component, sep, rest = item.partition("=")
        path, _, dockerfile = rest.partition(":")
        if not sep or not _COMPONENT.fullmatch(component) or not path.strip():
            raise ValueError(
                f"{item!r} is not COMPONENT=PATH[:DOCKERFILE] (e.g. backend=. or "
                "backend=services/api:Dockerfile.prod)"
            )
        if any(component == seen for seen, _, _ in specs):
            raise ValueError(f"{component!r} is built twice; give one COMPONENT=PATH per component")
        specs.append((component, path.strip(), dockerfile.strip() or "Dockerfile"))
    return tuple(specs)


def parse_build_args(items: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """Parse ``[COMPONENT:]KEY=VALUE`` build arguments into ``(component or "", key, value)``.

    Without a component the argument goes to every build.

    >>> parse_build_args(["BASE=python:3.12-slim", "backend:VERSION=1.2"])
    (('', 'BASE', 'python:3.12-slim'), ('backend', 'VERSION', '1.2'))
    """
    args = []
    for item in items:
        head, sep, value = item.partition("=")
        component, colon, key = head.rpartition(":")
        if (
            not sep
            or not _ARG_NAME.fullmatch(key)
            or (colon and not _COMPONENT.fullmatch(component))
        ):
            raise ValueError(f"{item!r} is not [COMPONENT:]KEY=VALUE (e.g. BASE=python:3.12)")
        args.append((component, key, value))
    return tuple(args)


def split_command(text: str) -> tuple[str, ...]:
    """Split a shell-like command line; ``{python}`` becomes the running interpreter."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid command line ({exc})") from None
    if not parts:
        raise ValueError("the command is empty")
    return tuple(part.replace("{python}", sys.executable) for part in parts)

"""A pool of warm sandboxes: ``livesandbox warm --count N`` and the replacement a claim starts.

``livesandbox warm`` reads the same settings a pytest run would (``--sandbox-*`` options after
``--``, ``LIVESANDBOX_*`` variables, the ini file of ``--rootdir``), computes the reuse key and
provisions warm sandboxes until ``N`` of that key wait::

    livesandbox warm --count 2 -- --sandbox=kube --sandbox-manifests=k8s/
    pytest --sandbox=kube --sandbox-manifests=k8s/ --sandbox-reuse --sandbox-reuse-pool=2

A run with ``--sandbox-reuse-pool=N`` that claims one starts ``livesandbox warm --count N`` in
the background (a detached process that outlives the run), so the next run finds one too.
"""

from __future__ import annotations

import argparse
import configparser
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from . import reuse
from .backends import load_backend
from .config import OPTIONS, RawValue, SandboxConfig
from .info import new_sandbox_id
from .locations import state_root
from .protocol import ListScope


def sandbox_parser() -> argparse.ArgumentParser:
    """The ``--sandbox-*`` options as pytest knows them (for ``livesandbox warm``)."""
    parser = argparse.ArgumentParser(prog="livesandbox warm --", add_help=False)
    for spec in OPTIONS:
        if spec.kind == "bool":
            parser.add_argument(spec.cli_flag, action="store_true", default=None, dest=spec.name)
        elif spec.kind == "list":
            parser.add_argument(spec.cli_flag, action="append", default=None, dest=spec.name)
        else:
            parser.add_argument(spec.cli_flag, default=None, dest=spec.name)
    return parser


def read_ini(rootdir: Path) -> dict[str, RawValue]:
    """``livesandbox_*`` keys of ``pytest.ini`` or ``pyproject.toml`` in ``rootdir``."""
    keys = {spec.ini_key: spec for spec in OPTIONS}
    found: dict[str, RawValue] = {}
    ini = rootdir / "pytest.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(ini)
        section = parser["pytest"] if parser.has_section("pytest") else {}
        for key, value in section.items():
            if key in keys:
                lines = [ln.strip() for ln in value.splitlines() if ln.strip()]
                found[keys[key].name] = lines if keys[key].kind == "list" else value.strip()
        return found
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("pytest", {})
        for key, value in table.get("ini_options", {}).items():
            if key in keys:
                found[keys[key].name] = (
                    [str(v) for v in value] if isinstance(value, list) else str(value)
                )
    return found


def config_from(argv: Sequence[str], rootdir: Path) -> SandboxConfig:
    """The configuration a pytest run in ``rootdir`` with ``argv`` would resolve."""
    cli = vars(sandbox_parser().parse_args(list(argv)))
    return SandboxConfig.from_sources(
        cli=cli, env=os.environ, ini=read_ini(rootdir), rootdir=rootdir.resolve()
    )


def warm_count(config: SandboxConfig, key: str, exclude: str = "") -> int:
    """How many warm sandboxes of ``key`` wait now (not counting ``exclude``)."""
    backend = load_backend(config.backend)
    scope = ListScope(kubeconfig=config.kubeconfig, context=config.context)
    waiting = [r for r in backend.list_sandboxes(scope) if r.status == "warm" and r.id != exclude]
    return sum(1 for rec in waiting if rec.reuse_key == key)


def top_up(config: SandboxConfig, count: int, exclude: str = "") -> list[str]:
    """Provision warm sandboxes until ``count`` of the config's reuse key wait; their ids.

    ``exclude``: the sandbox a run just claimed (it comes back warm at the run's end, but the
    runs meanwhile need ``count`` others).
    """
    backend = load_backend(config.backend)
    key = reuse.reuse_key(config, backend)
    made = []
    for _ in range(max(0, count - warm_count(config, key, exclude))):
        info = backend.provision(config, new_sandbox_id(), f"warm-{new_sandbox_id()}")
        try:
            reuse.prepare(info, key)
        except BaseException:
            backend.teardown(info)
            raise
        backend.keep_warm(info, time.time() + config.reuse_idle)
        made.append(info.id)
    return made


def spawn_top_up(count: int, rootdir: Path, argv: Sequence[str], exclude: str) -> int:
    """Start ``livesandbox warm --count N`` detached (it outlives this run); its pid."""
    log = state_root() / "warm-pool.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_livesandbox.cli",
                "warm",
                "--count",
                str(count),
                "--rootdir",
                str(rootdir),
                "--exclude",
                exclude,
                "--",
                *argv,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def sandbox_args(args: Sequence[str]) -> list[str]:
    """The ``--sandbox*`` options (with their values) among a pytest command line's ``args``."""
    flags = {spec.cli_flag: spec for spec in OPTIONS}
    picked: list[str] = []
    items = list(args)
    for i, arg in enumerate(items):
        flag = arg.split("=", 1)[0]
        if flag not in flags:
            continue
        picked.append(arg)
        if "=" not in arg and flags[flag].kind != "bool" and i + 1 < len(items):
            picked.append(items[i + 1])
    return picked

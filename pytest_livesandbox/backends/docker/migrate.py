"""``--sandbox-migrate-cmd`` on docker: one container of the app's image, run to completion.

    run_migration_container(client, "myapp:dev", ("alembic", "upgrade", "head"),
                            env={"DATABASE_URL": url}, network="livesandbox-3f9c2a1b",
                            labels=labels, name="livesandbox-3f9c2a1b-migrate",
                            log=workdir / "migrate.log", timeout=60)

The command's first word replaces the image's entrypoint; the container carries the sandbox's
labels (so ``livesandbox gc`` finds it after a crash) and is removed either way. A non-zero exit,
a start failure (``executable file not found``) or the timeout is
:class:`~pytest_livesandbox.errors.MigrationFailed`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import docker.errors
import requests

from ...config import SandboxConfig
from ...info import SandboxInfo
from ...logtail import tail
from ...postgres.migrate import MIGRATE_LOG, migration_failed
from .resources import COMPONENT


def in_image(cmd: tuple[str, ...]) -> tuple[str, ...]:
    """``cmd`` as it runs inside an image: ``{python}`` (this interpreter's path) is ``python3``.

    >>> in_image((sys.executable, "-m", "alembic", "upgrade", "head"))[0]
    'python3'
    """
    return tuple("python3" if part == sys.executable else part for part in cmd)


def migrate(
    client: Any,
    config: SandboxConfig,
    info: SandboxInfo,
    image: str,
    network: str,
    labels: dict[str, str],
    db_url: str,
) -> None:
    """Run ``config.migrate_cmd`` for sandbox ``info``; its log and timing go into ``info``."""
    assert config.migrate_cmd is not None
    began = time.perf_counter()
    log = Path(str(info.workdir)) / MIGRATE_LOG
    info.extra["migrate_log"] = str(log)
    run_migration_container(
        client,
        image,
        in_image(config.migrate_cmd),
        env={**dict(config.app_env), "DATABASE_URL": db_url},
        network=network,
        labels={**labels, COMPONENT: "migrate"},
        name=f"livesandbox-{info.id}-migrate",
        log=log,
        timeout=config.startup_timeout,
    )
    info.timings["migrate_s"] = round(time.perf_counter() - began, 4)


def run_migration_container(
    client: Any,
    image: str,
    cmd: tuple[str, ...],
    *,
    env: dict[str, str],
    network: str,
    labels: dict[str, str],
    name: str,
    log: Path,
    timeout: float,
) -> None:
    """Run ``cmd`` in ``image`` on ``network``; output to ``log``; raise if it fails."""
    container = client.containers.create(
        image,
        entrypoint=[cmd[0]],
        command=list(cmd[1:]),
        environment=env,
        network=network,
        labels=labels,
        name=name,
    )
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            why = f"could not start in image {image}: {exc.explanation or exc}"
            raise migration_failed(cmd, why, "", str(log)) from None
        try:
            code: int | None = int(container.wait(timeout=timeout)["StatusCode"])
        except requests.exceptions.RequestException:
            container.kill()
            code = None
        log.write_bytes(container.logs())
    finally:
        container.remove(force=True)
    if code is None:
        why = f"did not finish in {timeout:g}s (--sandbox-startup-timeout)"
        raise migration_failed(cmd, why, tail(log), str(log))
    if code != 0:
        raise migration_failed(cmd, f"exited with code {code}", tail(log), str(log))

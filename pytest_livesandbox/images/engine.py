"""Build and push through the Docker engine (docker-py), the tool CI runners have.

Why the engine and not BuildKit/buildah: every CI runner with Docker (GitHub's, GitLab's docker
executor, a workstation) has it, it reads the same ``.dockerignore`` and credentials as
``docker build``/``docker push``, and its layer cache makes an unchanged-but-one-file rebuild
take seconds. ``buildah bud`` or a BuildKit daemon are drop-in alternatives where there is no
engine (rootless CI pods); they would plug in here behind the same two functions::

    client = engine()
    image_id, log = build(client, spec, "127.0.0.1:5000/livesandbox/backend:ls-3f9c")
    digest = push(client, "127.0.0.1:5000/livesandbox/backend", "ls-3f9c")   # 'sha256:...'

Build logs are kept in memory; a failing build raises :class:`BuildFailed` with its last lines.
Credentials for the push come from the engine's Docker config and are never put in a message.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..errors import BuildFailed, ClusterUnreachable, RegistryError
from .context import BuildSpec

LOG_TAIL = 20


def preload() -> None:
    """Import docker-py now, in the calling thread (no-op without it: :func:`engine` says so).

    A build thread that imported it while the main thread imports the kubernetes client can
    see ``requests`` (both need it) half-initialised: an ``ImportError`` from neither's fault.
    """
    try:
        import docker
        import docker.utils.build  # noqa: F401  (context_files)
    except ImportError:
        return


def engine() -> Any:
    """A docker-py client for the engine of the environment (``DOCKER_HOST`` or the socket)."""
    try:
        import docker
    except ImportError:
        raise BuildFailed(
            "--sandbox-build needs the Docker SDK: pip install 'pytest-livesandbox[docker]'"
        ) from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        raise ClusterUnreachable(
            f"--sandbox-build: no Docker engine answered ({type(exc).__name__}: {exc}). "
            "Hint: images are built through the Docker engine; start it or set DOCKER_HOST."
        ) from None
    return client


def build(client: Any, spec: BuildSpec, ref: str) -> tuple[str, list[str]]:
    """Build ``spec`` as ``ref``; return the image id and the log's last lines."""
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    image_id = ""
    error = ""
    try:
        stream = client.api.build(
            path=str(spec.context),
            dockerfile=spec.dockerfile,
            tag=ref,
            buildargs=dict(spec.args),
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in text.splitlines():
                if line.strip():
                    tail.append(line.rstrip())
            if "error" in chunk:
                error = str(chunk.get("error") or "").strip()
                tail.append(error)
            aux = chunk.get("aux") or {}
            if aux.get("ID"):
                image_id = aux["ID"]
    except Exception as exc:  # the engine refused the request itself (bad Dockerfile path, ...)
        error = getattr(exc, "explanation", None) or str(exc)
        tail.append(str(error))
    if error or not image_id:
        try:
            image_id = "" if error else client.images.get(ref).id
        except Exception:
            image_id = ""
    if error or not image_id:
        lines = "\n".join(f"  {line}" for line in tail) or "  (no output)"
        raise BuildFailed(
            f"{spec.flag}: the image build failed: {error or 'no image was produced'}\n"
            f"Last lines of the build log:\n{lines}\n"
            f"Hint: reproduce with `docker build -f {spec.dockerfile_path} {spec.context}`."
        )
    return image_id, list(tail)


def push(client: Any, repository: str, tag: str) -> str:
    """Push ``repository:tag``; return the manifest digest the registry stored."""
    digest = ""
    error = ""
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                error = str(chunk.get("error") or "").strip()
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
    except Exception as exc:
        error = str(getattr(exc, "explanation", None) or exc)
    host = repository.split("/", 1)[0]
    if error:
        lowered = error.lower()
        if any(w in lowered for w in ("unauthorized", "denied", "authentication", "credentials")):
            raise RegistryError(
                f"pushing {repository}:{tag} was refused by {host}: {error}. Hint: give the "
                f"engine credentials for it (`docker login {host}`, or on GKE `gcloud auth "
                f"configure-docker {host}`); they are read from $DOCKER_CONFIG/config.json."
            )
        raise RegistryError(
            f"pushing {repository}:{tag} to {host} failed: {error}. Hint: check "
            "--sandbox-registry and that the registry accepts pushes."
        )
    if not digest:
        raise RegistryError(f"pushing {repository}:{tag}: the engine reported no digest")
    return digest

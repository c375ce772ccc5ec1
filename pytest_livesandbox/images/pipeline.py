"""From source to an image reference the backend runs: check, build, push, or skip both.

    result = build_local(specs)                       # docker: built in the engine, no push
    result = build_and_push(specs, Registry(addr))    # kube/gke: pushed; refs are REPO@sha256:...
    result.record(info)                               # timings build_s/push_s, extra["digests"]

Every spec is checked (context, Dockerfile) and the registry asked (``/v2/``) before the first
build starts, so bad input fails in milliseconds. A tag the registry already has (``HEAD
manifests/<tag>``) is neither built nor pushed; locally, an image already tagged with the content
tag is not rebuilt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..info import SandboxInfo
from . import engine as eng
from .context import BuildSpec, check_spec, content_tag
from .registry import Registry

LOCAL_REPOSITORY = "livesandbox-build"


@dataclass(frozen=True)
class BuiltImage:
    """One component's image: what to run (``ref``) and what happened to get it."""

    component: str
    ref: str  # REPO@sha256:... after a push, the image id (sha256:...) for a local build
    tag: str  # the content tag
    digest: str  # manifest digest (pushed) or image id (local)
    built: bool  # False: an image of this content existed already
    pushed: bool  # False: local only, or the registry had the tag


@dataclass
class BuildResult:
    """All components' images and the time the two stages took."""

    images: dict[str, BuiltImage] = field(default_factory=dict)
    build_s: float = 0.0
    push_s: float = 0.0

    def refs(self) -> list[tuple[str, str]]:
        """``(component, ref)`` pairs, as ``--sandbox-image`` overrides."""
        return [(c, image.ref) for c, image in self.images.items()]

    def record(self, info: SandboxInfo) -> None:
        """Put the stage timings and each component's digest into ``info``."""
        info.timings["build_s"] = round(self.build_s, 4)
        info.timings["push_s"] = round(self.push_s, 4)
        info.extra["digests"] = {c: image.ref for c, image in self.images.items()}
        info.extra["builds"] = {c: asdict(image) for c, image in self.images.items()}


def build_local(specs: list[BuildSpec], client: Any | None = None) -> BuildResult:
    """Build each spec in the engine as ``livesandbox-build/<component>:<content tag>``."""
    for spec in specs:
        check_spec(spec)
    client = client or eng.engine()
    result = BuildResult()
    for spec in specs:
        tag = content_tag(spec)
        ref = f"{LOCAL_REPOSITORY}/{spec.component}:{tag}"
        began = time.perf_counter()
        image_id = _local_image(client, ref)
        built = image_id is None
        if image_id is None:
            image_id, _ = eng.build(client, spec, ref)
        result.build_s += time.perf_counter() - began
        result.images[spec.component] = BuiltImage(
            spec.component, image_id, tag, image_id, built=built, pushed=False
        )
    return result


def build_and_push(
    specs: list[BuildSpec], registry: Registry, client: Any | None = None, *, checked: bool = False
) -> BuildResult:
    """Build each spec whose content tag ``registry`` lacks, push it; refs are digests."""
    if not checked:
        for spec in specs:
            check_spec(spec)
        registry.check()
    result = BuildResult()
    for spec in specs:
        tag = content_tag(spec)
        repository = registry.repository(spec.component)
        began = time.perf_counter()
        digest = registry.manifest_digest(spec.component, tag)
        built = pushed = False
        if digest is None:
            client = client or eng.engine()
            if _local_image(client, f"{repository}:{tag}") is None:
                eng.build(client, spec, f"{repository}:{tag}")
                built = True
            result.build_s += time.perf_counter() - began
            began = time.perf_counter()
            digest = eng.push(client, repository, tag)
            pushed = True
            result.push_s += time.perf_counter() - began
        else:
            result.build_s += time.perf_counter() - began
        result.images[spec.component] = BuiltImage(
            spec.component, f"{repository}@{digest}", tag, digest, built=built, pushed=pushed
        )
    return result


def _local_image(client: Any, ref: str) -> str | None:
    try:
        image_id: str = client.images.get(ref).id
    except Exception:  # docker.errors.ImageNotFound (docker-py is an optional dependency)
        return None
    return image_id


class BackgroundBuild:
    """:func:`build_and_push` in a thread, so the sandbox comes up while the image builds.

    The inputs (contexts, Dockerfiles, the registry's ``/v2/``) are checked at once, in the
    caller's thread: bad input raises before anything is created::

        pending = BackgroundBuild(specs, Registry(addr))   # BuildFailed / RegistryError here
        ...                                                # connect, namespace, PostgreSQL
        result = pending.result()                          # the build's own error, if any

    The thread is a daemon: a run that fails before it asks for the result (no cluster, a
    refused namespace) exits without waiting for a build nobody will deploy.
    """

    def __init__(self, specs: list[BuildSpec], registry: Registry) -> None:
        for spec in specs:
            check_spec(spec)
        registry.check()
        eng.preload()  # no import inside the thread (see engine.preload)
        self._done = threading.Event()
        self._result: BuildResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(specs, registry), name="livesandbox-build", daemon=True
        )
        self._thread.start()

    def _run(self, specs: list[BuildSpec], registry: Registry) -> None:
        try:
            self._result = build_and_push(specs, registry, checked=True)
        except BaseException as exc:  # handed to result(), in the caller's thread
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> BuildResult:
        """Wait for the build and push; re-raise their error in this thread."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

"""What a build is made of, and its content-addressed tag.

A :class:`BuildSpec` is one ``--sandbox-build COMPONENT=PATH[:DOCKERFILE]`` with its build args.
:func:`content_tag` hashes what the Docker engine would be sent (the context after
``.dockerignore``, the same rules docker-py uses to make the tar), the Dockerfile and the build
args, so the same tree always gets the same tag::

    spec = BuildSpec("backend", Path("examples/demo_app"), "Dockerfile", (("BASE", "img"),))
    check_spec(spec)            # BuildFailed when the folder or the Dockerfile is missing
    content_tag(spec)           # 'ls-3f9c2a1b7d4e5f60a1b2'
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildFailed

TAG_PREFIX = "ls-"


@dataclass(frozen=True)
class BuildSpec:
    """One image to build: the component it is for, its context, Dockerfile and build args."""

    component: str
    context: Path
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()

    @property
    def dockerfile_path(self) -> Path:
        """The Dockerfile, relative to the context folder."""
        return self.context / self.dockerfile

    @property
    def flag(self) -> str:
        """How the user wrote it, for messages: ``--sandbox-build backend=PATH``."""
        suffix = "" if self.dockerfile == "Dockerfile" else f":{self.dockerfile}"
        return f"--sandbox-build {self.component}={self.context}{suffix}"


def specs_from(
    builds: Iterable[tuple[str, Path, str]], build_args: Iterable[tuple[str, str, str]]
) -> list[BuildSpec]:
    """The config's ``build`` and ``build_arg`` tuples as specs (args without component go to all).

    >>> [s.args for s in specs_from([("app", Path("."), "Dockerfile")], [("", "A", "1")])]
    [(('A', '1'),)]
    """
    args = list(build_args)
    return [
        BuildSpec(
            component,
            context,
            dockerfile,
            tuple((key, value) for target, key, value in args if target in ("", component)),
        )
        for component, context, dockerfile in builds
    ]


def check_spec(spec: BuildSpec) -> None:
    """Raise :class:`BuildFailed` naming the fix when the context or the Dockerfile is missing."""
    if not spec.context.is_dir():
        raise BuildFailed(
            f"{spec.flag}: the build context {spec.context} is not a folder. Hint: PATH is "
            "relative to the pytest rootdir (or absolute); use e.g. --sandbox-build backend=."
        )
    if not spec.dockerfile_path.is_file():
        raise BuildFailed(
            f"{spec.flag}: no Dockerfile at {spec.dockerfile_path}. Hint: name it after the "
            f"context, e.g. --sandbox-build {spec.component}={spec.context}:docker/Dockerfile "
            "(relative to the context)."
        )


def context_files(spec: BuildSpec) -> list[str]:
    """Paths (relative, ``/``-separated) the engine is sent, after ``.dockerignore``."""
    from docker.utils.build import exclude_paths  # the rules docker-py's build tar uses

    ignore = spec.context / ".dockerignore"
    patterns: list[str] = []
    if ignore.is_file():
        patterns = [
            line.strip()
            for line in ignore.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    files = exclude_paths(str(spec.context), patterns, dockerfile=spec.dockerfile)
    return sorted(f.replace(os.sep, "/") for f in files)


def content_tag(spec: BuildSpec) -> str:
    """``ls-`` + 20 hex digits of sha256 over the context files, the Dockerfile and the args.

    Each file contributes its path, executable bit and bytes (a symlink: its target), so a
    changed mode or a renamed file is a new tag too.
    """
    digest = hashlib.sha256()
    for rel in context_files(spec):
        path = spec.context / rel
        info = path.lstat()
        digest.update(f"\0{rel}\0{stat.S_IMODE(info.st_mode) & 0o111:o}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(path).encode())
        elif stat.S_ISREG(info.st_mode):
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    digest.update(b"\0dockerfile\0" + spec.dockerfile.encode() + b"\0")
    digest.update(spec.dockerfile_path.read_bytes())
    for key, value in sorted(spec.args):
        digest.update(f"\0arg\0{key}={value}".encode())
    return TAG_PREFIX + digest.hexdigest()[:20]

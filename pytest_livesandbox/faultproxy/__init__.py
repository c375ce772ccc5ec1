"""The fault proxy: a standard-library-only TCP/HTTP proxy with a JSON control API.

It runs wherever the sandbox runs: as a child process (local), a container (docker) or a pod
(kube, gke), always from the same files, :data:`SERVER_FILES` (run :data:`SERVER_SCRIPT`)::

    python -I -S .../faultproxy/server.py --state-file proxy.json --parent-pid 1234

In a container or pod the files are the installed plugin's, put into :data:`CODE_DIR` (docker
copies them in, kube mounts them from a ConfigMap) and run by :data:`CONTAINER_COMMAND` with the
image's ``python3``, so any image with python3 (3.9+) works and the proxy always matches the
plugin's control client::

    {"server.py": "...", ...} == server_code()    # what goes into CODE_DIR
    code_digest(server_code())                     # "3f9c2a1b0d4e5f60": changes with the code

:mod:`.client` is the control API's client (used by every backend's chaos driver).
"""

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "server.py"
#: Everything the server needs at run time (standard library only): copy these into an image.
SERVER_FILES = tuple(
    HERE / name for name in ("server.py", "link.py", "sockets.py", "toxics.py", "http1.py")
)
#: Where a container or pod holds :data:`SERVER_FILES` (one flat folder: they import as siblings).
CODE_DIR = "/opt/livesandbox-faultproxy"
#: How a container or pod runs them: isolated (``-I``: no PYTHON* variables, no script folder
#: on ``sys.path`` until server.py puts it there), no ``site``, no ``.pyc`` written, unbuffered.
CONTAINER_COMMAND = ("python3", "-I", "-S", "-B", "-u", f"{CODE_DIR}/server.py")
#: The image a container or pod runs it in unless ``--sandbox-image fault-proxy=REF`` names one
#: (built here by ``cluster/build-images``; any image with python3 works).
DEFAULT_IMAGE = "localhost/livesandbox/fault-proxy:1"


def proxy_image(images: tuple[tuple[str, str], ...]) -> str:
    """``--sandbox-image fault-proxy=REF`` (kube's clock sidecar too), else :data:`DEFAULT_IMAGE`.

    >>> proxy_image((("fault-proxy", "python:3.12-slim"),))
    'python:3.12-slim'
    """
    return dict(images).get("fault-proxy", DEFAULT_IMAGE)


def server_code() -> dict[str, str]:
    """:data:`SERVER_FILES` as file name -> text (a ConfigMap's ``data``)."""
    return {path.name: path.read_text(encoding="utf-8") for path in SERVER_FILES}


def code_digest(code: dict[str, str]) -> str:
    """16 hex digits of a hash over the files' names and texts."""
    digest = hashlib.sha256()
    for name, text in sorted(code.items()):
        digest.update(f"{name}\0{len(text)}\0".encode())
        digest.update(text.encode())
    return digest.hexdigest()[:16]

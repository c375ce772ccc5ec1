"""The fault proxy: a standard-library-only TCP/HTTP proxy with a JSON control API.

It runs wherever the sandbox runs: as a child process (local), a container (docker) or a pod
(kube, gke), always from the same files, :data:`SERVER_FILES` (run :data:`SERVER_SCRIPT`)::

    python -I -S .../faultproxy/server.py --state-file proxy.json --parent-pid 1234

:mod:`.client` is the control API's client (used by every backend's chaos driver).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "server.py"
#: Everything the server needs at run time (standard library only): copy these into an image.
SERVER_FILES = tuple(
    HERE / name for name in ("server.py", "link.py", "sockets.py", "toxics.py", "http1.py")
)

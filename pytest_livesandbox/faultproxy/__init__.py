"""The fault proxy: a standard-library-only TCP/HTTP proxy with a JSON control API.

It runs wherever the sandbox runs: as a child process (local), a container (docker) or a pod
(kube, gke), always from the same file, :data:`SERVER_SCRIPT`::

    python -I -S .../faultproxy/server.py --state-file proxy.json --parent-pid 1234

:mod:`.client` is the control API's client (used by every backend's chaos driver).
"""

from pathlib import Path

SERVER_SCRIPT = Path(__file__).resolve().parent / "server.py"

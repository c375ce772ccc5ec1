"""A local TCP port tunnelled to a pod through the API server (what ``kubectl port-forward`` does).

    fwd = PortForwarder(configuration, "sandbox-3f9c", "app.kubernetes.io/component=backend", 8000)
    fwd.start()                      # listens on 127.0.0.1:fwd.port
    httpx.get(f"http://127.0.0.1:{fwd.port}/healthz")
    fwd.close()

Each accepted connection gets its own port-forward stream (``kubernetes.stream.portforward``) to a
running pod matching the selector, Ready and newest first, looked up again for every connection
(an evicted pod's replacement is reached by the next connection). The listener lives in the
process that provisioned the sandbox (the xdist controller); workers reach it over loopback.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import threading
from typing import Any
from urllib.parse import parse_qsl, urlparse

from kubernetes import client as k8s
from kubernetes.client import ApiException
from kubernetes.stream import portforward, ws_client

from .coreapi import CoreApi

_BUFFER = 256 * 1024


class PortForwarder:
    """Forward ``127.0.0.1:<port>`` to ``<port>`` of a pod chosen by label ``selector``."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        namespace: str,
        selector: str,
        port: int | str,
        *,
        name: str = "app",
    ) -> None:
        # portforward() swaps the ApiClient's transport while it connects, so this client is ours
        # alone and used under a lock.
        self._api: Any = k8s.ApiClient(configuration)
        self._core: Any = CoreApi(self._api)
        self._lock = threading.Lock()
        self.namespace = namespace
        self.selector = selector
        self.remote_port = port
        self.name = name
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._pod: tuple[str, int] | None = None
        self._open: set[socket.socket] = set()
        self.last_error: str | None = None
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"livesandbox-forward-{name}", daemon=True
        )

    def start(self) -> PortForwarder:
        """Start accepting connections."""
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening and cut every open tunnel."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for sock in list(self._open):
            _close(sock)
        self._thread.join(2)
        self._api.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._serve,
                args=(client,),
                name=f"livesandbox-tunnel-{self.name}",
                daemon=True,
            ).start()

    def target(self) -> tuple[str, int]:
        """``(pod name, numeric port)`` of a running pod behind the selector, Ready ones first.

        Looked up for every new connection (one list call), so after an eviction or a deleted
        database pod the next connection reaches the replacement, not the terminating pod.
        """
        with self._lock:
            try:
                self._pod = self._resolve()
            except ApiException:
                if self._pod is None:
                    raise  # else: the API server hiccuped; the last pod may still serve
            return self._pod

    def _resolve(self) -> tuple[str, int]:
        pods: list[Any] = self._core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _request_timeout=10
        ).items
        running = [
            p
            for p in pods
            if p.status and p.status.phase == "Running" and p.metadata.deletion_timestamp is None
        ]
        if not running:
            raise LookupError(f"no running pod matches {self.selector} in {self.namespace}")
        running.sort(key=lambda p: (pod_ready(p), p.metadata.creation_timestamp), reverse=True)
        pod = running[0]
        return str(pod.metadata.name), _numeric_port(pod, self.remote_port)

    def _serve(self, client: socket.socket) -> None:
        try:
            pod, port = self.target()
            with self._lock:
                forward = _open_tunnel(
                    self._core.connect_get_namespaced_pod_portforward,
                    pod,
                    self.namespace,
                    ports=str(port),
                )
            remote = forward.socket(port)
        except (ApiException, LookupError, OSError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._pod = None  # the pod may be gone: look again next time
            _close(client)
            return
        self._open.update((client, remote))
        try:
            _pump(client, remote, self._closed)
        finally:
            self._open.discard(client)
            self._open.discard(remote)
            _close(client)
            _close(remote)
            error = forward.error(port)
            if error:
                self.last_error = error.strip()
                with self._lock:
                    self._pod = None


_ws: Any = ws_client


class _Tunnel(_ws.PortForward):  # type: ignore[misc]
    """The client's port-forward stream, made to end cleanly when the far side goes away.

    The library's proxy thread lets ``SSLEOFError``/``OSError`` escape when the API server drops
    the stream (nothing listening on the pod's port yet, pod deleted): the thread dies unreported
    to the local socket, whose reader then waits forever. Here the local end is closed instead, so
    the reader sees EOF, and nothing reaches ``threading.excepthook``.
    """

    failure: BaseException | None = None

    def _proxy(self) -> None:
        try:
            proxy: Any = super()._proxy
            proxy()
        except Exception as exc:
            self.failure = exc
        finally:
            for port in self.local_ports.values():
                with contextlib.suppress(OSError):
                    port.python.close()
            with contextlib.suppress(Exception):
                self.websocket.close()


def _tunnel_call(configuration: Any, _method: str, url: str, **kwargs: Any) -> _Tunnel:
    # ws_client.portforward_call, building a _Tunnel instead of a PortForward.
    query = parse_qsl(urlparse(url).query, keep_blank_values=True)
    ports = [int(p) for key, value in query if key == "ports" for p in value.split(",")]
    try:
        websocket = _ws.create_websocket(
            configuration, _ws.get_websocket_url(url, query), kwargs.get("headers")
        )
        return _Tunnel(websocket, ports)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        raise ApiException(status=0, reason=str(exc)) from None


# ``portforward`` is functools.partial(<websocket request>, portforward_call, {...}): the same
# request machinery (auth headers, URL building) with our call in place of portforward_call.
_open_tunnel: Any = (
    functools.partial(portforward.func, _tunnel_call, *portforward.args[1:])
    if isinstance(portforward, functools.partial)
    else portforward  # another client layout: the plain port-forward still works
)


def _pump(a: Any, b: Any, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    try:
        while not closed.is_set():
            readable, _, _ = select.select(list(peers), [], [], 1.0)
            for fd in readable:
                src, dst = peers[fd]
                data = src.recv(_BUFFER)
                if not data:
                    return
                dst.sendall(data)
    except (OSError, ValueError):
        return


def _close(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def pod_ready(pod: Any) -> bool:
    """True when ``pod``'s Ready condition is True."""
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _numeric_port(pod: Any, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for container in pod.spec.containers:
        for declared in container.ports or []:
            if declared.name == port:
                return int(declared.container_port)
    raise LookupError(f"pod {pod.metadata.name} declares no port named {port!r}")

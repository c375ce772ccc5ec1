"""Bearer-token auth in front of a real registry, as Docker Hub and Artifact Registry do it.

Two real HTTP servers (stdlib ``http.server`` in threads, started and closed by the test):

- a token service (``/token``, another origin, like ``auth.docker.io``): ``GET`` with Basic
  credentials (or none: an anonymous token that may only pull) or the OAuth2 ``POST`` form; a
  wrong password is ``401``. Tokens are random, short-lived, scoped to
  ``repository:NAME:pull,push``;
- the registry's front door: every ``/v2/`` request needs ``Authorization: Bearer <token>``
  with the scope the method needs (GET/HEAD pull, the rest push), else ``401`` with
  ``WWW-Authenticate: Bearer realm="...",service="...",scope="..."``; accepted requests are
  forwarded to the real registry (its ``Location`` headers pointed back at the front door)::

    with TokenAuthRegistry("127.0.0.1:5000", "lsbuser", password) as front:
        front.addr      # '127.0.0.1:41233': push and pull here
        front.issued    # tokens handed out (to assert they never appear in any output)
        front.seen      # (method, path, status) of every request at the front door
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE = "livesandbox-test-registry"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
_ROUTES = ("/manifests/", "/blobs/", "/tags/")


def repository_of(path: str) -> str | None:
    """``NAME`` of ``/v2/NAME/(manifests|blobs|tags)/...``; None for ``/v2/`` itself.

    >>> repository_of("/v2/lsbtest/backend/blobs/uploads/1"), repository_of("/v2/")
    ('lsbtest/backend', None)
    """
    rest = path[len("/v2/") :]
    cut = min((rest.find(r) for r in _ROUTES if r in rest), default=-1)
    return rest[:cut] if cut > 0 else None


class TokenAuthRegistry:
    """The token service and the front door (see the module docstring)."""

    def __init__(self, upstream: str, user: str, password: str, token_ttl: float = 300) -> None:
        self.upstream = upstream
        self.user, self.password = user, password
        self.token_ttl = token_ttl
        self.tokens: dict[str, tuple[float, set[tuple[str, str]], bool]] = {}
        self.issued: list[str] = []
        self.seen: list[tuple[str, str, int]] = []
        self.token_requests: list[tuple[str, bool]] = []  # (method, with credentials)
        self.lock = threading.Lock()
        self._auth = ThreadingHTTPServer(("127.0.0.1", 0), self._token_handler())
        self._front = ThreadingHTTPServer(("127.0.0.1", 0), self._front_handler())
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in (self._auth, self._front)
        ]

    @property
    def addr(self) -> str:
        """``127.0.0.1:PORT`` of the front door (what ``--sandbox-registry`` names)."""
        return f"127.0.0.1:{self._front.server_address[1]}"

    @property
    def realm(self) -> str:
        """The token service's URL, as the challenges name it."""
        return f"http://127.0.0.1:{self._auth.server_address[1]}/token"

    def __enter__(self) -> TokenAuthRegistry:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in (self._auth, self._front):
            server.shutdown()
            server.server_close()

    # -- the token service ------------------------------------------------------------------------

    def _grant(self, scopes: list[str], authenticated: bool) -> str:
        granted: set[tuple[str, str]] = set()
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) != 3 or parts[0] != "repository":
                continue
            for action in parts[2].split(","):
                if action == "pull" or authenticated:
                    granted.add((parts[1], action))
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (time.monotonic() + self.token_ttl, granted, authenticated)
            self.issued.append(token)
        return token

    def _token_handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _issue(self, user: str | None, password: str | None, scopes: list[str]) -> None:
                with front.lock:
                    front.token_requests.append((self.command, user is not None))
                if user is not None and (user, password) != (front.user, front.password):
                    self._answer(401, {"details": "incorrect username or password"})
                    return
                token = front._grant(scopes, authenticated=user is not None)
                self._answer(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": int(front.token_ttl),
                        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                header = self.headers.get("Authorization", "")
                user = password = None
                if header.lower().startswith("basic "):
                    raw = base64.b64decode(header.split(" ", 1)[1]).decode(errors="replace")
                    user, _, password = raw.partition(":")
                self._issue(user, password, query.get("scope", []))

            def do_POST(self) -> None:  # the OAuth2 form some clients use
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                user = form["username"][0] if form.get("username") else None
                password = form["password"][0] if form.get("password") else None
                scopes = [s for value in form.get("scope", []) for s in value.split(" ")]
                self._issue(user, password, scopes)

        return Handler

    # -- the registry's front door ----------------------------------------------------------------

    def _allowed(self, header: str, repository: str | None, action: str) -> bool:
        if not header.startswith("Bearer "):
            return False
        with self.lock:
            found = self.tokens.get(header[len("Bearer ") :])
        if found is None or found[0] < time.monotonic():
            return False
        return repository is None or (repository, action) in found[1]

    def _front_handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _challenge(self, repository: str | None, action: str) -> None:
                actions = "pull" if action == "pull" else "pull,push"
                scope = f',scope="repository:{repository}:{actions}"' if repository else ""
                data = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate", f'Bearer realm="{front.realm}",service="{SERVICE}"{scope}'
                )
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
                path = urlsplit(self.path).path
                repository = repository_of(path) if path.startswith("/v2/") else None
                action = "pull" if self.command in ("GET", "HEAD") else "push"
                if not front._allowed(self.headers.get("Authorization", ""), repository, action):
                    with front.lock:
                        front.seen.append((self.command, path, 401))
                    self._challenge(repository, action)
                    return
                self._forward(body, path)

            def _forward(self, body: bytes, path: str) -> None:
                conn = http.client.HTTPConnection(front.upstream, timeout=120)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP | {"authorization", "host", "content-length"}
                }
                if self.command in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                with front.lock:
                    front.seen.append((self.command, path, response.status))
                self.send_response(response.status)
                length = response.getheader("Content-Length")
                for key, value in response.getheaders():
                    if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                        continue
                    if key.lower() == "location":
                        value = value.replace(f"http://{front.upstream}", f"http://{front.addr}")
                    self.send_header(key, value)
                if self.command == "HEAD" or length is not None:
                    if length is not None:
                        self.send_header("Content-Length", length)
                    self.end_headers()
                    while self.command != "HEAD":
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                else:
                    data = response.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler

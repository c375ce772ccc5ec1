r"""HTTP/1.1 awareness for the fault proxy: request framing, test scopes and ``http`` toxics.

Standard library only and free of proxy internals (the proxy imports it by path as well as from
the package), so every backend's proxy shares it. A route created with ``"protocol": "http"``
splits each connection's client -> server bytes into requests with :class:`RequestStream`::

    stream = RequestStream()
    head = b"GET /items HTTP/1.1\r\nHost: x\r\nX-Livesandbox-Test: t1\r\n\r\n"
    for piece in stream.feed(head):
        print(piece.kind, piece.request and piece.request.scope)   # head t1, then end None

- Framing: ``Content-Length`` and ``Transfer-Encoding: chunked`` bodies (with trailers),
  keep-alive, and pipelined requests are followed; bytes are forwarded as they came, except that
  the :data:`SCOPE_HEADER` line is cut out of each head.
- Anything that is not HTTP/1.x (a bad request line, a head over 64 KiB, a bad length or chunk
  size), and everything after an ``Upgrade`` or ``CONNECT``, is passed through untouched as
  ``raw`` pieces; :attr:`RequestStream.unparsed` says so and the proxy counts such connections.

An ``http`` toxic answers, aborts or delays the requests it matches (:func:`decide`); its params
are those of the ``http_fault`` marker (``status``, ``body``, ``retry_after``, ``abort``,
``delay``, ``times``, ``every``, ``rate``, ``seed``, ``path``, ``method``).
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

SCOPE_HEADER = "X-Livesandbox-Test"
MAX_HEAD = 64 * 1024
ACTIONS = ("status", "abort", "delay")
_SCOPE = SCOPE_HEADER.lower().encode()
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _RAW = range(7)


@dataclass
class Request:
    """One request's head, as far as faults need it."""

    method: str
    path: str
    scope: str = ""
    close: bool = False  # the client asked to close after the response
    expect: bool = False  # ``Expect: 100-continue``: the body follows only once told to


@dataclass
class Piece:
    """A slice of the stream: ``head`` (with its request), ``body``, ``end`` or ``raw``."""

    kind: str
    data: bytes = b""
    request: Request | None = None


class RequestStream:
    """Incremental splitter of one connection's client -> server bytes into requests."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.unparsed = ""  # why the stream fell back to raw ("" while it parses)
        self._raw_after = False

    def feed(self, data: bytes) -> list[Piece]:
        """The pieces ``data`` completes, in order."""
        if self.state == _RAW:
            return [Piece("raw", data)]
        self.buffer += data
        pieces: list[Piece] = []
        while self.buffer and self.state != _RAW:
            if not self._step(pieces):
                break
        if self.state == _RAW and self.buffer:
            pieces.append(Piece("raw", bytes(self.buffer)))
            self.buffer.clear()
        return pieces

    def _fail(self, why: str) -> bool:
        self.state = _RAW
        self.unparsed = why
        return False

    def _step(self, pieces: list[Piece]) -> bool:
        """Consume one unit from the buffer; False when more data is needed."""
        buf = self.buffer
        if self.state == _HEAD:
            while buf[:2] == b"\r\n":  # empty lines before a request are allowed
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if not _plausible(buf):  # fail early: a TLS or HTTP/2 client waits for us
                    return self._fail(f"not an HTTP/1.x request: {bytes(buf[:20])!r}")
                return len(buf) > MAX_HEAD and self._fail("request head over 64 KiB")
            head = bytes(buf[: end + 4])
            del buf[: end + 4]
            return self._head(head, pieces)
        if self.state == _LENGTH:
            take = min(self.remaining, len(buf))
            pieces.append(Piece("body", bytes(buf[:take])))
            del buf[:take]
            self.remaining -= take
            if not self.remaining:
                self._end(pieces)
            return True
        if self.state == _CHUNK_DATA:
            take = min(self.remaining, len(buf))
            pieces.append(Piece("body", bytes(buf[:take])))
            del buf[:take]
            self.remaining -= take
            if not self.remaining:
                self.state = _CHUNK_CRLF
            return True
        if self.state == _CHUNK_CRLF:
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                return self._fail("chunk not followed by CRLF")
            pieces.append(Piece("body", bytes(buf[:2])))
            del buf[:2]
            self.state = _CHUNK_SIZE
            return True
        end = buf.find(b"\r\n")
        if end < 0:
            return len(buf) > MAX_HEAD and self._fail("chunk line over 64 KiB")
        line = bytes(buf[: end + 2])
        del buf[: end + 2]
        pieces.append(Piece("body", line))
        if self.state == _TRAILER:
            if line == b"\r\n":
                self._end(pieces)
            return True
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return self._fail(f"bad chunk size {line[:20]!r}")
        if size < 0:
            return self._fail("negative chunk size")
        self.state, self.remaining = (_CHUNK_DATA, size) if size else (_TRAILER, 0)
        return True

    def _head(self, head: bytes, pieces: list[Piece]) -> bool:
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[0].isalpha():
            return self._fail(f"not an HTTP/1.x request line: {lines[0][:40]!r}")
        method, target, version = (p.decode("latin-1") for p in parts)
        length, chunked, scope, keep = 0, False, "", version == "HTTP/1.1"
        expect = False
        kept = [lines[0]]
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return self._fail("header line without ':'")
            key = name.strip().lower()
            text = value.strip().decode("latin-1")
            if key == _SCOPE:
                scope = text
                continue
            kept.append(line)
            if key == b"content-length":
                if not text.isdigit():
                    return self._fail(f"bad Content-Length {text!r}")
                length = int(text)
            elif key == b"transfer-encoding":
                chunked = text.lower().endswith("chunked")
            elif key == b"connection":
                tokens = {t.strip().lower() for t in text.split(",")}
                keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
            elif key == b"upgrade":
                self._raw_after = True
            elif key == b"expect":
                expect = text.lower() == "100-continue"
        if method == "CONNECT":
            self._raw_after = True
        data = head if len(kept) == len(lines) else b"\r\n".join(kept) + b"\r\n\r\n"
        path = target.split("?", 1)[0]
        request = Request(method.upper(), path, scope, close=not keep, expect=expect)
        pieces.append(Piece("head", data, request))
        if chunked:
            self.state = _CHUNK_SIZE
        elif length:
            self.state, self.remaining = _LENGTH, length
        else:
            self._end(pieces)
        return True

    def _end(self, pieces: list[Piece]) -> None:
        pieces.append(Piece("end"))
        self.state = _HEAD
        if self._raw_after:
            self.state = _RAW
            self.unparsed = "upgraded (Upgrade / CONNECT): passed through"


def _plausible(buf: bytearray) -> bool:
    """True if ``buf`` could be the start of an HTTP/1.x request head."""
    line_end = buf.find(b"\r\n")
    line = bytes(buf[:line_end] if line_end >= 0 else buf[:300])
    method, space, rest = line.partition(b" ")
    if not space:
        return len(method) <= 20 and (not method or method.isalpha())
    if not method.isalpha():
        return False
    if line_end >= 0:
        return rest.endswith((b" HTTP/1.1", b" HTTP/1.0"))
    return True


class HttpToxic(Protocol):
    """What :func:`decide` needs of a proxy toxic of kind ``http``."""

    params: dict[str, Any]
    scope: str
    hits: int
    seen: int
    rng: random.Random | None


T = TypeVar("T", bound=HttpToxic)


def validate(params: dict[str, Any]) -> str:
    """Why ``params`` cannot make an ``http`` toxic ("" when they can)."""
    action = params.get("action")
    if action not in ACTIONS:
        return f"http params.action must be one of {ACTIONS}"
    if action == "status" and not 100 <= int(params.get("status", 0)) <= 599:
        return "http params.status must be 100..599"
    if action == "delay" and float(params.get("delay", 0)) <= 0:
        return "http params.delay must be > 0 (seconds)"
    if params.get("every") and params.get("rate") is not None:
        return "http params: give every or rate, not both"
    if params.get("rate") is not None and not 0 < float(params["rate"]) <= 1:
        return "http params.rate must be in (0, 1]"
    return ""


def matches(toxic: HttpToxic, request: Request) -> bool:
    """Scope, method and path match (before counting)."""
    if toxic.scope and toxic.scope != request.scope:
        return False
    params = toxic.params
    methods = params.get("method")
    if isinstance(methods, str):
        methods = [methods]
    if methods and request.method not in [str(m).upper() for m in methods]:
        return False
    pattern = params.get("path")
    return not pattern or fnmatch.fnmatchcase(request.path, str(pattern))


def decide(toxics: list[T], request: Request) -> T | None:
    """The toxic that fires on ``request`` (the first one that does), counting seen and hits.

    Every matching toxic counts the request in ``seen``; ``times`` caps the hits (then requests
    pass), ``every=K`` fires on the K-th, 2K-th ... matching request, ``rate`` on that fraction
    (drawn from the toxic's own seeded generator, so runs repeat).
    """
    fired: T | None = None
    for toxic in toxics:
        if not matches(toxic, request):
            continue
        toxic.seen += 1
        if fired is not None:
            continue
        params = toxic.params
        times = int(params.get("times") or 0)
        if times and toxic.hits >= times:
            continue
        every = int(params.get("every") or 0)
        if every and toxic.seen % every:
            continue
        rate = params.get("rate")
        if rate is not None:
            if toxic.rng is None:
                toxic.rng = random.Random(params.get("seed", 0))
            if toxic.rng.random() >= float(rate):
                continue
        toxic.hits += 1
        fired = toxic
    return fired


def response(params: dict[str, Any], request: Request) -> bytes:
    """The response an ``http`` toxic with ``action="status"`` sends instead of the app."""
    status = int(params.get("status", 503))
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Fault"
    body = str(params.get("body", f"livesandbox http_fault: {status} {reason}\n")).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "X-Livesandbox-Fault: http_fault",
    ]
    if params.get("retry_after") is not None:
        lines.append(f"Retry-After: {params['retry_after']}")
    if request.close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if request.method == "HEAD" else head + body

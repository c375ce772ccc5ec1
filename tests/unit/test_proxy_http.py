"""The fault proxy's HTTP layer as pure functions: framing, scope header, matching, counting."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pytest_livesandbox.faultproxy.http1 import (
    Piece,
    Request,
    RequestStream,
    decide,
    response,
    validate,
)

GET = b"GET /items?x=1 HTTP/1.1\r\nHost: a\r\nX-Livesandbox-Test: t1\r\n\r\n"
CHUNKED = (
    b"POST /items HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"
)


def feed_bytewise(stream: RequestStream, data: bytes) -> list[Piece]:
    pieces = []
    for i in range(len(data)):
        pieces += stream.feed(data[i : i + 1])
    return pieces


def joined(pieces: list[Piece]) -> bytes:
    return b"".join(p.data for p in pieces)


def test_head_is_parsed_and_the_scope_header_stripped() -> None:
    pieces = RequestStream().feed(GET)
    assert [p.kind for p in pieces] == ["head", "end"]
    request = pieces[0].request
    assert request == Request("GET", "/items", "t1", close=False)
    assert joined(pieces) == b"GET /items?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_head_without_the_header_is_forwarded_byte_for_byte() -> None:
    data = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    pieces = RequestStream().feed(data)
    assert joined(pieces) == data and pieces[0].request == Request("GET", "/", "", close=False)
    assert RequestStream().feed(b"GET / HTTP/1.0\r\n\r\n")[0].request.close  # type: ignore[union-attr]


def test_content_length_and_chunked_bodies_split_anywhere() -> None:
    body = b"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
    for data in (body + CHUNKED + GET, body + CHUNKED + GET):
        stream = RequestStream()
        pieces = feed_bytewise(stream, data)
        kinds = [p.kind for p in pieces if p.kind != "body"]
        assert kinds == ["head", "end", "head", "end", "head", "end"]
        assert stream.unparsed == ""
        assert joined(pieces) == data.replace(b"X-Livesandbox-Test: t1\r\n", b"")


def test_pipelined_requests_in_one_chunk() -> None:
    pieces = RequestStream().feed(GET + GET + CHUNKED)
    assert [p.request.method for p in pieces if p.request] == ["GET", "GET", "POST"]
    assert pieces[-1].kind == "end"


def test_what_is_not_http_passes_through_untouched() -> None:
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        stream = RequestStream()
        pieces = stream.feed(garbage) + stream.feed(b"more")
        assert stream.unparsed, garbage
        assert b"".join(p.data for p in pieces if p.kind in ("raw", "head", "body")).endswith(
            b"more"
        )
    big = RequestStream()
    assert big.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000)[0].kind == "raw"


def test_after_an_upgrade_the_stream_is_raw() -> None:
    stream = RequestStream()
    pieces = stream.feed(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    assert [p.kind for p in pieces] == ["head", "end", "raw"]
    assert stream.unparsed.startswith("upgraded")


@dataclass
class Toxic:
    params: dict[str, Any]
    scope: str = ""
    hits: int = 0
    seen: int = 0
    rng: random.Random | None = field(default=None, repr=False)


def fire(toxic: Toxic, requests: list[Request]) -> list[bool]:
    return [decide([toxic], r) is toxic for r in requests]


def test_times_every_rate_path_method_and_scope() -> None:
    get = Request("GET", "/items", "t1")
    assert fire(Toxic({"action": "status", "times": 2}), [get] * 4) == [True, True, False, False]
    every = Toxic({"action": "status", "every": 3})
    assert fire(every, [get] * 6) == [False, False, True, False, False, True]
    assert (every.hits, every.seen) == (2, 6)
    rate = [fire(Toxic({"action": "abort", "rate": 0.3, "seed": 7}), [get] * 1000) for _ in "ab"]
    assert rate[0] == rate[1] and 250 < sum(rate[0]) < 350  # seeded: the same run twice
    post = Request("POST", "/items", "t1")
    matcher = Toxic({"action": "status", "path": "/items*", "method": ["POST"]})
    assert fire(matcher, [get, post, Request("POST", "/other", "t1")]) == [False, True, False]
    assert matcher.seen == 1
    scoped = Toxic({"action": "status"}, scope="t1")
    assert fire(scoped, [get, Request("GET", "/items", "t2"), Request("GET", "/", "")]) == [
        True,
        False,
        False,
    ]


def test_the_first_firing_toxic_wins_and_all_count_the_request() -> None:
    a, b = Toxic({"action": "status", "times": 1}), Toxic({"action": "abort"})
    get = Request("GET", "/", "")
    assert [decide([a, b], get) for _ in range(2)] == [a, b]
    assert (a.seen, b.seen, a.hits, b.hits) == (2, 2, 1, 1)


def test_the_answer() -> None:
    params = {"status": 503, "retry_after": 2, "body": "busy"}
    data = response(params, Request("GET", "/", close=True))
    head, body = data.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 2" in head and b"Connection: close" in head and body == b"busy"
    assert response(params, Request("HEAD", "/")).endswith(b"\r\n\r\n")
    assert validate({"action": "status", "status": 503}) == ""
    assert "action" in validate({"action": "explode"})
    assert "rate" in validate({"action": "abort", "rate": 2})

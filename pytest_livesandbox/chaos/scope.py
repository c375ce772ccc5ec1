"""Which test a request belongs to: the scope token that client -> app faults are keyed on.

``live_http`` and ``live_async_http`` send :data:`SCOPE_HEADER` with the running test's token;
the fault proxy strips it and applies a scoped fault only to requests that carry its token. The
token is derived from the process and the test id, so the fixtures and the ``chaos`` session
compute the same value without passing it around::

    headers = scope_headers(request.node.nodeid)   # for a client of your own
    httpx.get(live_url + "/items", headers=headers)
"""

from __future__ import annotations

import hashlib
import os

from ..faultproxy.http1 import SCOPE_HEADER

__all__ = ["SCOPE_HEADER", "scope_headers", "scope_token"]


def scope_token(nodeid: str) -> str:
    """The token of test ``nodeid`` in this process (16 hex digits)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    digest = hashlib.sha256(f"{worker}:{os.getpid()}:{nodeid}".encode())
    return digest.hexdigest()[:16]


def scope_headers(nodeid: str) -> dict[str, str]:
    """Headers that put a request into test ``nodeid``'s scope."""
    return {SCOPE_HEADER: scope_token(nodeid)}

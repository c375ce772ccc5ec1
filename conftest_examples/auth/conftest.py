"""Roles and logins for the auth examples, built on pytest-livesandbox's fixtures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pytest_livesandbox.fixtures import make_db_role

# A fixture per tenant: a real role that may only read notes, its tenant set for row security.
tenant_a = make_db_role("tenant_a", grants={"notes": "SELECT"}, rls_settings={"app.tenant_id": "a"})
tenant_b = make_db_role("tenant_b", grants={"notes": "SELECT"}, rls_settings={"app.tenant_id": "b"})


@pytest.fixture
def login(live_http: httpx.Client) -> Callable[[str, str], dict[str, str]]:
    """Log in through the API; returns the token pair (access, refresh)."""

    def log_in(user: str, tenant: str) -> dict[str, str]:
        response = live_http.post("/tokens", json={"user": user, "tenant": tenant})
        assert response.status_code == 201, response.text
        return dict(response.json())

    return log_in


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}

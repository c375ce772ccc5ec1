"""Fixtures for the demo app's own vocabulary, built on pytest-livesandbox's fixtures."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def make_account(live_http: httpx.Client):
    """Create an account through the API and return its id."""

    def make(balance: int, owner: str = "test") -> int:
        response = live_http.post("/accounts", json={"owner": owner, "balance": balance})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    return make

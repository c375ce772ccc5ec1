"""Inner test file: a marker the backend cannot honour is a collection error, not a skip."""

import pytest


@pytest.mark.latency(ms=100, target="db")
def test_latency(live_url: str) -> None:
    pass

"""Inner test file: a marker the backend cannot honour is a collection error, not a skip."""

import pytest


@pytest.mark.clock(offset="+1h")
def test_clock(live_url: str) -> None:
    pass

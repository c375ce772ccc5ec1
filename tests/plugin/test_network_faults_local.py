"""The network-fault inner file the docker, kube and gke tests run, on the local backend."""

from __future__ import annotations

import pytest

from tests.plugin.test_chaos_plugin import copy_example, run, sandbox_ini

__all__ = ["sandbox_ini"]  # the fixture, imported for this module's tests


def test_latency_and_every_network_fault_on_local(sandbox_ini: pytest.Pytester) -> None:
    copy_example(sandbox_ini, "chaos_network.py")
    result, found = run(sandbox_ini, "-n", "2")
    result.assert_outcomes(passed=10)
    for name in ("test_app_latency", "test_reset", "test_timeout", "test_bandwidth"):
        (record,) = found[name]["chaos"]
        assert record["hits"] >= 1 and record["scope"], record
    (db,) = found["test_db_latency"]["chaos"]
    assert db["hits"] >= 1 and "scope" not in db  # app -> db: exclusive, never scoped

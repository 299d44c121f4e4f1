"""Fixtures for the Splunk connector tests: HEC and management-API stand-ins on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from splunk_hec_standin import HecStandIn
from splunk_testkit import TOKEN


@pytest.fixture
def hec() -> Iterator[HecStandIn]:
    """An HEC stand-in with indexer acknowledgement off."""
    server = HecStandIn(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def hec_ack() -> Iterator[HecStandIn]:
    """An HEC stand-in whose token uses indexer acknowledgement."""
    server = HecStandIn(TOKEN, use_ack=True).start()
    yield server
    server.stop()

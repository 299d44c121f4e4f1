"""Fixtures for the Elasticsearch connector: the stand-in cluster on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elastic_helpers import API_KEY
from elastic_standin import StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.expected_auth = f"ApiKey {API_KEY}"
    server.start()
    yield server
    server.stop()

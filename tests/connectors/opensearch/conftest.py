"""Fixtures for the OpenSearch connector: the stand-in cluster on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opensearch_helpers import ACCESS_KEY, PASSWORD, REGION, SECRET_KEY, USER
from opensearch_standin import SigV4Check, StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """A stand-in that wants basic credentials."""
    server = StandIn()
    server.basic = (USER, PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """A stand-in that verifies SigV4 signatures (service es) with the test key in the environment."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    server = StandIn()
    server.sigv4 = SigV4Check({ACCESS_KEY: SECRET_KEY}, REGION, "es")
    server.start()
    yield server
    server.stop()

"""Fixtures for the OpenSearch connector: the stand-in cluster on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
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


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_standin(ca: trustme.CA) -> Iterator[StandIn]:
    """The stand-in over HTTPS, with a certificate from a CA the client does not trust by default."""
    server = StandIn()
    server.basic = (USER, PASSWORD)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.start(tls=context)
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

"""Fixtures shared by every test folder: the real corpus and a moto server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trailrelay.testing import (
    CORPUS_ENV,
    REQUIRE_CORPUS_ENV,
    corpus_dir,
    provide_core_services,
    require_corpus,
)

FIXTURES = Path(__file__).parent / "fixtures"

# Connector commands and helpers run here without the `trailrelay` CLI in front of them, which
# is what lends them core's services (reading a sink's config, the rule pack's alerts).
provide_core_services()


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared real-CloudTrail corpus; tests using it skip when it is absent (fail when required)."""
    return require_corpus()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server in server mode on 127.0.0.1 (boto3 speaks real HTTP to it)."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and the moto endpoint in the environment, as a user would set them."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def pytest_report_header() -> list[str]:
    found = corpus_dir()
    required = os.environ.get(REQUIRE_CORPUS_ENV) == "1"
    absent = "absent (corpus tests FAIL: required)" if required else "absent (corpus tests skip)"
    return [
        f"trailrelay corpus: {found or absent}",
        f"{CORPUS_ENV}={os.environ.get(CORPUS_ENV, '')} {REQUIRE_CORPUS_ENV}={os.environ.get(REQUIRE_CORPUS_ENV, '')}",
    ]

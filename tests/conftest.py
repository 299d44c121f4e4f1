"""Fixtures shared by every test folder: the real corpus and a moto server on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _receive_one_at_a_time() -> None:
    """Make moto's SQS ReceiveMessage atomic, as SQS's visibility guarantee is.

    moto checks that a message is visible and marks it received without a lock, so two
    ReceiveMessage calls arriving together on its threaded server can both get the same message
    (seen once in CI: two ``--workers`` each read the same object). SQS does not hand a message
    to a second consumer inside its visibility timeout. Each look at the queue runs under a lock;
    a long poll waits between looks outside it, so one consumer's poll never holds up another's.
    """
    from moto.sqs.models import SQSBackend

    receive = SQSBackend.receive_message
    if getattr(receive, "one_at_a_time", False):
        return
    lock = threading.Lock()

    def atomic(
        self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any, **kwargs: Any
    ) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock:
                found = receive(self, queue_name, count, 0, *args, **kwargs)
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.02)

    atomic.one_at_a_time = True  # type: ignore[attr-defined]
    SQSBackend.receive_message = atomic  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server in server mode on 127.0.0.1 (boto3 speaks real HTTP to it)."""
    moto_server = pytest.importorskip("moto.server")
    _receive_one_at_a_time()
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

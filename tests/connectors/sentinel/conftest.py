"""Fixtures for the Sentinel connector: a trustme CA, the HTTPS stand-in, sinks wired to it."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).parent))

from sentinel_standin import Standin, StandinState

from trailrelay.contract import SinkContext
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.sink import SentinelSink

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "66666666-7777-8888-9999-000000000000"
SECRET = "s3cr3t-Value~With.Chars_0123456789"
RULE = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-AWSCloudTrail"

# Fast SDK retry settings for tests that turn SDK retries on.
FAST_RETRY = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> Any:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def standin(server_cert: Any) -> Iterator[Standin]:
    state = StandinState(TENANT, CLIENT, SECRET, RULE, STREAM)
    server = Standin(state, server_cert)
    yield server
    server.stop()


def dead_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(standin: Standin, ca_file: str | None, **overrides: Any) -> SentinelConfig:
    """A sentinel config pointing both token and ingestion calls at the stand-in."""
    table: dict[str, Any] = {
        "type": "sentinel",
        "endpoint": standin.url,
        "rule_id": RULE,
        "stream": STREAM,
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "authority_host": standin.url,
        "disable_instance_discovery": True,
        "ca_bundle": ca_file,
        "timeout": 5,
    }
    table.update(overrides)
    return SentinelConfig.validate({k: v for k, v in table.items() if v is not None})


def context(name: str = "sentinel") -> SinkContext:
    return SinkContext(name, logging.getLogger(f"trailrelay.test.{name}"), "trailrelay/0.1.0 sentinel/0.1.0")


def sink_for(
    standin: Standin, ca_file: str | None, *, config: SentinelConfig | None = None, **kw: Any
) -> SentinelSink:
    """An unopened sink against the stand-in; keyword args go to SentinelSink."""
    cfg = config or config_for(standin, ca_file)
    kw.setdefault("client_options", dict(FAST_RETRY))
    kw.setdefault("credential_options", dict(FAST_RETRY))
    kw.setdefault("warn_interval", 0.0)
    return SentinelSink(cfg, context(), **kw)


@pytest.fixture
def make_sink(standin: Standin, ca_file: str) -> Iterator[Any]:
    """Factory for opened sinks against the stand-in; closed at teardown."""
    made: list[SentinelSink] = []

    def factory(**kw: Any) -> SentinelSink:
        overrides = kw.pop("config_overrides", {})
        cfg = config_for(standin, ca_file, **overrides)
        sink = sink_for(standin, ca_file, config=cfg, **kw)
        sink.open()
        made.append(sink)
        return sink

    yield factory
    for sink in made:
        sink.close()

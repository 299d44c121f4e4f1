"""Helpers shared by the OpenSearch connector tests (a unique module name, not conftest)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from trailrelay.contract import SinkContext
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.plugin import plugin
from trailrelay_opensearch.sink import OpenSearchSink

USER = "trailrelay"
PASSWORD = "s3cret-Pa55word-for-tests"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"


def context(name: str = "opensearch") -> SinkContext:
    return SinkContext(
        name=name,
        logger=logging.getLogger("test.opensearch"),
        user_agent="trailrelay/test trailrelay-opensearch/test",
    )


def make_config(url: str, **overrides: Any) -> OpenSearchConfig:
    """Basic authentication with the stand-in's user."""
    return _config(url, {"username": USER, "password": PASSWORD}, overrides)


def sigv4_config(url: str, **overrides: Any) -> OpenSearchConfig:
    """SigV4 in the test region (credentials from the environment)."""
    return _config(url, {"aws_sigv4": True, "region": REGION}, overrides)


def _config(url: str, auth: dict[str, Any], overrides: dict[str, Any]) -> OpenSearchConfig:
    return OpenSearchConfig.validate({"type": "opensearch", "url": url, **auth, "timeout": 5, **overrides})


def make_sink(config: OpenSearchConfig) -> OpenSearchSink:
    sink = plugin.create(config, context())
    assert isinstance(sink, OpenSearchSink)
    return sink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

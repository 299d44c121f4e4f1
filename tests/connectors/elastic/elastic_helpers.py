"""Helpers shared by the Elasticsearch connector tests (a unique module name, not conftest)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from trailrelay.contract import SinkContext
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.plugin import plugin
from trailrelay_elastic.sink import ElasticSink

API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
"""A made-up key in the encoded form Kibana shows (base64 of id:secret)."""


def context(name: str = "elastic") -> SinkContext:
    return SinkContext(
        name=name,
        logger=logging.getLogger("test.elastic"),
        user_agent="trailrelay/test trailrelay-elastic/test",
    )


def make_config(url: str, **overrides: Any) -> ElasticConfig:
    table: dict[str, Any] = {"type": "elastic", "url": url, "api_key": API_KEY, "timeout": 5}
    table.update(overrides)
    return ElasticConfig.validate(table)


def make_sink(url: str, **overrides: Any) -> ElasticSink:
    sink = plugin.create(make_config(url, **overrides), context())
    assert isinstance(sink, ElasticSink)
    return sink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

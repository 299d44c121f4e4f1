"""The ``trailrelay.sinks`` entry point: the factory for ``type = "elastic"`` sinks."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from trailrelay.contract import BillingRule, Encoder, Sink, SinkContext
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.encode import BulkEncoder
from trailrelay_elastic.search import ElasticSearcher
from trailrelay_elastic.sink import ElasticSink

__all__ = ["ElasticPlugin", "plugin", "source_sizes"]


class ElasticPlugin:
    """Builds Elasticsearch sinks and their offline encoders from validated configs."""

    name: ClassVar[str] = "elastic"
    config_model = ElasticConfig

    def create(self, config: Any, context: SinkContext) -> Sink:
        """A sink for one ``[[sinks]]`` table (an ElasticConfig)."""
        return ElasticSink(self._config(config), context)

    def encoder(self, config: Any) -> Encoder:
        """The encoder that yields the exact ``_bulk`` bodies the sink sends."""
        return BulkEncoder(self._config(config))

    def searcher(self, config: Any) -> ElasticSearcher:
        """Finds one event by eventID in the sink's target (``trailrelay canary``)."""
        typed = self._config(config)
        logger = logging.getLogger(f"trailrelay.sinks.{typed.display_name}")
        return ElasticSearcher(typed, logger, _user_agent())

    @staticmethod
    def billing_rule() -> BillingRule:
        """Elastic meters ingested document volume (``trailrelay cost``)."""
        return BillingRule(
            "ingested document bytes",
            "Elastic meters ingested document volume: the _bulk document source, not the action line",
            source_sizes,
            disk_ratio="elastic_disk_ratio",
        )

    @staticmethod
    def demo_config() -> dict[str, Any]:
        """Placeholder settings for ``trailrelay demo`` and ``cost`` (nothing is sent to them)."""
        return {"type": "elastic", "url": "https://elastic.example.invalid:9200", "api_key": "ZGVtbzpkZW1v"}

    @staticmethod
    def _config(config: Any) -> ElasticConfig:
        if isinstance(config, ElasticConfig):
            return config
        return ElasticConfig.validate(config)


def source_sizes(body: bytes) -> list[int]:
    """Bytes of each document source in a ``_bulk`` body (every second non-empty line)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    return [len(line) for line in lines[1::2]]


def _user_agent() -> str:
    try:
        return f"trailrelay-elastic/{version('trailrelay-elastic')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "trailrelay-elastic"


plugin = ElasticPlugin()

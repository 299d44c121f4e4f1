"""The ``trailrelay.sinks`` entry point: the factory for ``type = "opensearch"`` sinks."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from trailrelay.contract import BillingRule, Encoder, Sink, SinkContext
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.encode import BulkEncoder, source_sizes
from trailrelay_opensearch.search import OpenSearchSearcher
from trailrelay_opensearch.sink import OpenSearchSink

__all__ = ["OpenSearchPlugin", "plugin"]


class OpenSearchPlugin:
    """Builds OpenSearch sinks, their offline encoders and searchers from validated configs."""

    name: ClassVar[str] = "opensearch"
    config_model = OpenSearchConfig

    def create(self, config: Any, context: SinkContext) -> Sink:
        """A sink for one ``[[sinks]]`` table (an OpenSearchConfig)."""
        return OpenSearchSink(self._config(config), context)

    def encoder(self, config: Any) -> Encoder:
        """The encoder that yields the exact ``_bulk`` bodies the sink sends."""
        return BulkEncoder(self._config(config))

    def searcher(self, config: Any) -> OpenSearchSearcher:
        """Finds one event by eventID in the sink's target (``trailrelay canary``)."""
        typed = self._config(config)
        return OpenSearchSearcher(
            typed, logging.getLogger(f"trailrelay.sinks.{typed.display_name}"), user_agent()
        )

    @staticmethod
    def billing_rule() -> BillingRule:
        """Ingested document bytes and an on-disk estimate (``trailrelay cost``)."""
        return BillingRule(
            "ingested document bytes",
            "OpenSearch Serverless meters ingested data (the _bulk document source, not the action "
            "line) and bills OCU-hours and storage; domains and self-managed clusters pay for the "
            "disk the documents take (estimated with opensearch_disk_ratio)",
            source_sizes,
            disk_ratio="opensearch_disk_ratio",
        )

    @staticmethod
    def demo_config() -> dict[str, Any]:
        """Placeholder settings for ``trailrelay demo`` and ``cost`` (nothing is sent to them)."""
        return {
            "type": "opensearch",
            "url": "https://opensearch.example.invalid:9200",
            "username": "demo",
            "password": "demo-not-a-password",
        }

    @staticmethod
    def _config(config: Any) -> OpenSearchConfig:
        if isinstance(config, OpenSearchConfig):
            return config
        return OpenSearchConfig.validate(config)


def user_agent() -> str:
    """``trailrelay-opensearch/<version>`` for the commands' own requests."""
    try:
        return f"trailrelay-opensearch/{version('trailrelay-opensearch')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "trailrelay-opensearch"


plugin = OpenSearchPlugin()

"""The ``trailrelay.sinks`` entry point for ``type = "sentinel"``."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar

from trailrelay.contract import BillingRule, SinkContext
from trailrelay_sentinel.billing import BILLING_RULE
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.encode import SentinelEncoder
from trailrelay_sentinel.sink import SentinelSink

if TYPE_CHECKING:  # azure-monitor-query is imported only by `trailrelay canary`, not by every run
    from trailrelay_sentinel.search import SentinelSearcher

__all__ = ["SentinelPlugin", "plugin"]


class SentinelPlugin:
    """Builds Sentinel sinks and their offline encoder."""

    name: ClassVar[str] = "sentinel"
    config_model = SentinelConfig

    def create(self, config: Any, context: SinkContext) -> SentinelSink:
        """A sink for a validated :class:`SentinelConfig`."""
        if not isinstance(config, SentinelConfig):
            config = SentinelConfig.validate(config)
        return SentinelSink(config, context)

    def encoder(self, config: Any) -> SentinelEncoder:
        """The request bodies the sink would send, without sending (demo, cost), to its table."""
        if not isinstance(config, SentinelConfig):
            config = SentinelConfig.validate(config)
        return SentinelEncoder(table=config.table)

    @staticmethod
    def demo_config() -> dict[str, Any]:
        """Placeholder settings for ``trailrelay demo`` and ``cost`` (nothing is sent to them)."""
        return {
            "type": "sentinel",
            "endpoint": "https://demo.ingest.monitor.example.invalid",
            "rule_id": "dcr-00000000000000000000000000000000",
            "stream": "Custom-AWSCloudTrail",
            "tenant_id": "00000000-0000-0000-0000-000000000000",
            "client_id": "00000000-0000-0000-0000-000000000000",
            "client_secret": "demo-not-a-secret",
        }

    @staticmethod
    def billing_rule() -> BillingRule:
        """Azure Monitor's billed size of each row (``trailrelay cost``)."""
        return BILLING_RULE

    def searcher(self, config: Any) -> SentinelSearcher:
        """A Log Analytics query for one event (``trailrelay canary``); ConfigError without workspace_id."""
        from trailrelay_sentinel.search import SentinelSearcher  # noqa: PLC0415 - see the imports

        if not isinstance(config, SentinelConfig):
            config = SentinelConfig.validate(config)
        name = config.display_name
        context = SinkContext(name, logging.getLogger(f"trailrelay.sinks.{name}"), _user_agent())
        return SentinelSearcher(config, context)


def _user_agent() -> str:
    try:
        return f"trailrelay-sentinel/{version('trailrelay-sentinel')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "trailrelay-sentinel"


plugin = SentinelPlugin()

"""The ``trailrelay.sinks`` entry point for ``type = "sentinel"``."""

from __future__ import annotations

from typing import Any, ClassVar

from trailrelay.contract import SinkContext
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.encode import SentinelEncoder
from trailrelay_sentinel.sink import SentinelSink

__all__ = ["SentinelPlugin", "plugin"]


class SentinelPlugin:
    """Builds Sentinel sinks and their offline encoder."""

    name: ClassVar[str] = "sentinel"
    config_model = SentinelConfig

    def create(self, config: Any, context: SinkContext) -> SentinelSink:
        """A sink for a validated :class:`SentinelConfig`."""
        if not isinstance(config, SentinelConfig):
            config = SentinelConfig.model_validate(config)
        return SentinelSink(config, context)

    def encoder(self, config: Any) -> SentinelEncoder:  # noqa: ARG002 - bodies do not depend on config
        """The request bodies the sink would send, without sending (demo, cost)."""
        return SentinelEncoder()


plugin = SentinelPlugin()

"""The ``splunk`` entry point of the ``trailrelay.sinks`` group."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from trailrelay.contract import BillingRule, Encoder, Sink, SinkContext
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.encode import EnvelopeEncoder
from trailrelay_splunk.sink import SplunkSink

if TYPE_CHECKING:  # splunklib loads only for a search (verify, canary), not for forwarding
    from trailrelay_splunk.search import SplunkSearcher

__all__ = ["SplunkPlugin", "event_sizes", "plugin"]


class SplunkPlugin:
    """Builds Splunk HEC sinks and their offline encoders."""

    name: ClassVar[str] = "splunk"
    config_model = SplunkConfig

    def create(self, config: Any, context: SinkContext) -> Sink:
        """A SplunkSink for a validated SplunkConfig."""
        return SplunkSink(_typed(config), context)

    def encoder(self, config: Any) -> Encoder:
        """The envelope encoder the sink uses, for demo and cost estimates."""
        return EnvelopeEncoder(_typed(config))

    @staticmethod
    def demo_config() -> dict[str, Any]:
        """Placeholder settings for ``trailrelay demo`` and ``cost`` (nothing is sent to them)."""
        return {"type": "splunk", "url": "https://splunk.example.invalid:8088", "token": "demo-not-a-token"}

    @staticmethod
    def billing_rule() -> BillingRule:
        """Splunk licenses ``_raw`` (``trailrelay cost``)."""
        return BillingRule(
            "indexed raw event bytes",
            "Splunk licenses _raw: the event JSON as indexed, not the HEC envelope or indexed fields",
            event_sizes,
        )

    def searcher(self, config: Any) -> SplunkSearcher:
        """A oneshot search for one eventID (``trailrelay canary``); ConfigError without management keys."""
        typed = _typed(config)
        from trailrelay_splunk.search import SplunkSearcher  # noqa: PLC0415 - see the imports

        return SplunkSearcher(typed, logging.getLogger(f"trailrelay.sinks.{typed.display_name}"))


class _Envelope(msgspec.Struct):
    event: msgspec.Raw = msgspec.Raw(b"")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_STRING = msgspec.json.Decoder(str)


def event_sizes(body: bytes) -> list[int]:
    """Licensed bytes of each event in an HEC event body: a JSON ``event`` as sent, a string's text."""
    out: list[int] = []
    for piece in body.split(b"\n"):
        if not piece.strip():
            continue
        raw = bytes(_ENVELOPE.decode(piece).event)
        out.append(len(_STRING.decode(raw).encode("utf-8")) if raw[:1] == b'"' else len(raw))
    return out


def _typed(config: Any) -> SplunkConfig:
    if isinstance(config, SplunkConfig):
        return config
    return SplunkConfig.validate(config)


plugin = SplunkPlugin()

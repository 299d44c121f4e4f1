"""The ``[[sinks]]`` table of a Splunk sink, validated into a typed object at start-up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from trailrelay.contract import Meta, Secret, SentInHeader, SinkConfig, field, url_without_credentials

__all__ = ["HEC_MAX_CONTENT_LENGTH", "IndexedField", "SplunkConfig"]

HEC_MAX_CONTENT_LENGTH = 1_000_000
"""Splunk's default ``[http_input] max_content_length`` (limits.conf), in bytes."""

IndexedField = Literal["account", "region", "risk"]
"""Groups of indexed ``fields`` a sink can attach to each event."""


def _default_fields() -> list[IndexedField]:
    return ["risk"]


_COLLECTOR_SUFFIXES = ("/services/collector/event/1.0", "/services/collector/event", "/services/collector")


class SplunkConfig(SinkConfig):
    """Settings for sending CloudTrail records to a Splunk HTTP Event Collector."""

    type: Annotated[Literal["splunk"], Meta(description="Sink type.")] = "splunk"
    url: Annotated[str, Meta(description="HEC base URL, e.g. https://splunk.example.com:8088.")]
    token: Annotated[Secret, Meta(description="HEC token (use ${ENV_VAR} or ${file:/path})."), SentInHeader()]
    index: Annotated[str | None, Meta(description="Target index; the token's default when unset.")] = None
    sourcetype: Annotated[str, Meta(min_length=1, description="Sourcetype of every event.")] = (
        "aws:cloudtrail"
    )
    integrity_sourcetype: Annotated[
        str,
        Meta(
            min_length=1,
            description="Sourcetype of integrity events ([integrity]: one per CloudTrail digest checked).",
        ),
    ] = "trailrelay:integrity"
    integrity_index: Annotated[
        str | None, Meta(description="Index of integrity events; `index` when unset.")
    ] = None
    source: Annotated[
        str | None, Meta(description="Fixed source; by default each record's S3 URI or stream name.")
    ] = None
    host: Annotated[str | None, Meta(description="Host field; HEC's default when unset.")] = None
    ack: Annotated[
        bool | None,
        Meta(
            description="Indexer acknowledgement: unset uses it whenever the token has it (detected from "
            "HEC's answers; one warning when it does not); true requires it; false never asks."
        ),
    ] = None
    ca_bundle: Annotated[str | None, Meta(description="PEM bundle of a private CA for HEC's TLS.")] = None
    verify_tls: Annotated[bool, Meta(description="Verify HEC's TLS certificate (keep it on).")] = True
    batch_bytes: Annotated[
        int,
        Meta(
            ge=16 * 1024,
            le=838_860_800,
            description="Largest uncompressed request body; keep it under HEC's max_content_length.",
        ),
    ] = 800_000
    batch_events: Annotated[int, Meta(ge=1, le=100_000, description="Most events in one request.")] = 1000
    timeout: Annotated[float, Meta(gt=0, le=600, description="Seconds to wait for one HTTP response.")] = 30.0
    ack_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="Seconds to wait for an acknowledgement before re-sending (which may duplicate).",
        ),
    ] = 300.0
    ack_poll_interval: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description="Longest pause between polls of /services/collector/ack "
            "(shorter while acks come quickly).",
        ),
    ] = 1.0
    max_pending_bytes: Annotated[
        int,
        Meta(
            ge=64 * 1024,
            description="Memory for events sent and awaiting acknowledgement (held compressed); reading "
            "slows down when it is full.",
        ),
    ] = 64 * 1024 * 1024
    fields: Annotated[
        list[IndexedField],
        Meta(
            description="Indexed fields to add: account, region, risk (trailrelay's detection tags, on "
            "tagged records only). Default: risk."
        ),
    ] = field(default_factory=_default_fields)
    compress_level: Annotated[
        int, Meta(ge=0, le=3, description="gzip level of request bodies (ISA-L: 0 fastest .. 3 smallest).")
    ] = 1
    management_url: Annotated[
        str | None,
        Meta(
            description="splunkd management URL (https://splunk.example.com:8089), for `trailrelay canary` "
            "searches and `trailrelay splunk verify -c`."
        ),
    ] = None
    management_token: Annotated[
        Secret | None,
        Meta(description="Splunk authentication token for the management API (may search)."),
        SentInHeader(),
    ] = None
    username: Annotated[str | None, Meta(description="Splunk user for the management API.")] = None
    password: Annotated[Secret | None, Meta(description="Password of username.")] = None
    management_ca_bundle: Annotated[
        str | None, Meta(description="PEM bundle of the CA of splunkd's certificate; ca_bundle when unset.")
    ] = None

    def __post_init__(self) -> None:
        """Normalize the URLs, blank keys and ``fields``; check the keys that go together."""
        url = _base_url(self.url)
        management_url = _management_url(self.management_url)
        # a frozen Struct: normalized values are stored with force_setattr
        msgspec.structs.force_setattr(self, "url", url)
        msgspec.structs.force_setattr(self, "management_url", management_url)
        for key in ("index", "source", "host", "integrity_index"):
            msgspec.structs.force_setattr(self, key, getattr(self, key) or None)
        msgspec.structs.force_setattr(self, "fields", list(dict.fromkeys(self.fields)))
        if self.ack_poll_interval > self.ack_timeout:
            raise ValueError("ack_poll_interval must not exceed ack_timeout")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.management_token is not None and self.username is not None:
            raise ValueError("choose management_token or username + password, not both")


def _base_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ValueError("url must start with https:// (or http:// for a local test instance)")
    url_without_credentials(url, "url")
    for suffix in _COLLECTOR_SUFFIXES:
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    return url


def _management_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    url = value.strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ValueError("management_url must start with https:// (or http:// for a local test instance)")
    return url_without_credentials(url, "management_url")

"""The ``[[sinks]]`` table of a Splunk sink, validated into a typed object at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from trailrelay.contract import SinkConfig

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

    type: Literal["splunk"] = Field(default="splunk", description="Sink type.")
    url: str = Field(description="HEC base URL, e.g. https://splunk.example.com:8088.")
    token: SecretStr = Field(description="HEC token (use ${ENV_VAR} or ${file:/path}).")
    index: str | None = Field(default=None, description="Target index; the token's default when unset.")
    sourcetype: str = Field(default="aws:cloudtrail", min_length=1, description="Sourcetype of every event.")
    integrity_sourcetype: str = Field(
        default="trailrelay:integrity",
        min_length=1,
        description="Sourcetype of integrity events ([integrity]: one per CloudTrail digest checked).",
    )
    integrity_index: str | None = Field(
        default=None, description="Index of integrity events; `index` when unset."
    )
    source: str | None = Field(
        default=None, description="Fixed source; by default each record's S3 URI or stream name."
    )
    host: str | None = Field(default=None, description="Host field; HEC's default when unset.")
    ack: bool | None = Field(
        default=None,
        description="Indexer acknowledgement: unset uses it whenever the token has it (detected from "
        "HEC's answers; one warning when it does not); true requires it; false never asks.",
    )
    ca_bundle: str | None = Field(default=None, description="PEM bundle of a private CA for HEC's TLS.")
    verify_tls: bool = Field(default=True, description="Verify HEC's TLS certificate (keep it on).")
    batch_bytes: int = Field(
        default=800_000,
        ge=16 * 1024,
        le=838_860_800,
        description="Largest uncompressed request body; keep it under HEC's max_content_length.",
    )
    batch_events: int = Field(default=1000, ge=1, le=100_000, description="Most events in one request.")
    timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds to wait for one HTTP response.")
    ack_timeout: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Seconds to wait for an acknowledgement before re-sending (which may duplicate).",
    )
    ack_poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest pause between polls of /services/collector/ack "
        "(shorter while acks come quickly).",
    )
    max_pending_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="Memory for events sent and awaiting acknowledgement (held compressed); reading "
        "slows down when it is full.",
    )
    fields: list[IndexedField] = Field(
        default_factory=_default_fields,
        description="Indexed fields to add: account, region, risk (trailrelay's detection tags, on "
        "tagged records only). Default: risk.",
    )
    compress_level: int = Field(
        default=1, ge=0, le=3, description="gzip level of request bodies (ISA-L: 0 fastest .. 3 smallest)."
    )
    management_url: str | None = Field(
        default=None,
        description="splunkd management URL (https://splunk.example.com:8089), for `trailrelay canary` "
        "searches and `trailrelay splunk verify -c`.",
    )
    management_token: SecretStr | None = Field(
        default=None, description="Splunk authentication token for the management API (may search)."
    )
    username: str | None = Field(default=None, description="Splunk user for the management API.")
    password: SecretStr | None = Field(default=None, description="Password of username.")
    management_ca_bundle: str | None = Field(
        default=None, description="PEM bundle of the CA of splunkd's certificate; ca_bundle when unset."
    )

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ValueError("url must start with https:// (or http:// for a local test instance)")
        for suffix in _COLLECTOR_SUFFIXES:
            if url.endswith(suffix):
                url = url[: -len(suffix)]
                break
        return url

    @field_validator("management_url")
    @classmethod
    def _management_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ValueError("management_url must start with https:// (or http:// for a local test instance)")
        return url

    @field_validator("index", "source", "host", "integrity_index")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[IndexedField]) -> list[IndexedField]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _limits(self) -> SplunkConfig:
        if self.ack_poll_interval > self.ack_timeout:
            raise ValueError("ack_poll_interval must not exceed ack_timeout")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.management_token is not None and self.username is not None:
            raise ValueError("choose management_token or username + password, not both")
        return self

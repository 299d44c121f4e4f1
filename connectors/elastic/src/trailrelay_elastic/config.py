"""Typed configuration of one ``[[sinks]]`` table with ``type = "elastic"``."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

import msgspec

from trailrelay.contract import Meta, Secret, SentInHeader, SinkConfig, url_without_credentials

__all__ = ["DEFAULT_BATCH_BYTES", "ElasticConfig", "Target"]

DEFAULT_BATCH_BYTES = 10 * 1024 * 1024
"""10 MiB: the top of the 5-15 MB bulk size Elastic recommends, far below http.max_content_length."""

# Fleet's rules for a data stream namespace: lowercase, no '-', none of \/*?"<>|,# or space.
_NAMESPACE = re.compile(r"^[a-z0-9_][a-z0-9_.]{0,99}$")
_DATA_STREAM_NAME = re.compile(r"^(logs|metrics|traces|synthetics)-([^-]+(?:-[^-]+)*)-([^-]+)$")
# Elasticsearch index names: lowercase, not starting with - _ +, none of \/*?"<>|,# or space.
_INDEX_NAME = re.compile(r'^[a-z0-9][^A-Z\\/*?"<>|,# :]{0,254}$')
_FINGERPRINT = re.compile(r"^(?:[0-9a-fA-F]{2}:?){32}$")


class Target:
    """Where documents go: a data stream (with its type/dataset/namespace) or a plain index."""

    __slots__ = ("data_stream", "name")

    def __init__(self, name: str, data_stream: tuple[str, str, str] | None) -> None:
        self.name = name
        self.data_stream = data_stream
        """``(type, dataset, namespace)`` when the target follows the data stream naming scheme."""

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


_BASIC = "which the Elasticsearch client cannot send in basic authentication"
"""It encodes ``username:password`` as ASCII before base64 (elasticsearch.compat.to_bytes)."""


class ElasticConfig(SinkConfig):
    """Settings of the Elasticsearch sink; secrets are :class:`Secret` and never printed."""

    type: Annotated[Literal["elastic"], Meta(description="Sink type.")] = "elastic"
    url: Annotated[
        str | list[str] | None,
        Meta(description="Elasticsearch URL (or list of node URLs), e.g. https://es.example:9200."),
    ] = None
    cloud_id: Annotated[str | None, Meta(description="Elastic Cloud deployment id (instead of url).")] = None
    api_key: Annotated[
        Secret | None,
        Meta(description="API key in the encoded (base64) form Kibana shows when it creates one."),
        SentInHeader(),
    ] = None
    username: Annotated[
        str | None, Meta(description="User for basic authentication."), SentInHeader("ascii", _BASIC)
    ] = None
    password: Annotated[
        Secret | None, Meta(description="Password for basic authentication."), SentInHeader("ascii", _BASIC)
    ] = None
    bearer_token: Annotated[Secret | None, Meta(description="OAuth2/JWT bearer token."), SentInHeader()] = (
        None
    )
    mode: Annotated[
        Literal["integration", "ecs"],
        Meta(
            description="integration: raw record in `message` for Elastic's AWS integration pipeline; "
            "ecs: documents mapped to ECS here."
        ),
    ] = "integration"
    namespace: Annotated[
        str,
        Meta(description="Data stream namespace: logs-aws.cloudtrail-<namespace>."),
    ] = "default"
    data_stream: Annotated[str | None, Meta(description="Write to this data stream instead.")] = None
    index: Annotated[str | None, Meta(description="Write to this plain index or alias instead.")] = None
    pipeline: Annotated[str | None, Meta(description="Ingest pipeline to run on every document.")] = None
    integrity_data_stream: Annotated[
        str | None,
        Meta(
            description="Where integrity events ([integrity]: one per CloudTrail digest checked) go; "
            "default logs-trailrelay.integrity-<namespace>."
        ),
    ] = None
    ca_bundle: Annotated[
        str | None, Meta(description="PEM file of the CA(s) that signed the server certificate.")
    ] = None
    ssl_assert_fingerprint: Annotated[
        str | None,
        Meta(description="Pin the server certificate by its SHA-256 fingerprint (hex, colons allowed)."),
    ] = None
    verify_tls: Annotated[bool, Meta(description="Verify the server certificate (keep on).")] = True
    batch_bytes: Annotated[
        int, Meta(ge=64 * 1024, le=100 * 1024 * 1024, description="Max bytes of one _bulk body.")
    ] = DEFAULT_BATCH_BYTES
    batch_actions: Annotated[
        int, Meta(ge=1, le=100_000, description="Max documents in one _bulk request.")
    ] = 2000
    timeout: Annotated[float, Meta(gt=0, le=600, description="Seconds to wait for one request.")] = 60.0
    search_api_key: Annotated[
        Secret | None,
        Meta(
            description="API key (encoded) that may read the target, for `trailrelay canary`; the sink's "
            "own credentials are used when unset (they then need the `read` index privilege)."
        ),
        SentInHeader(),
    ] = None

    def __post_init__(self) -> None:
        """Checks of single keys (as they were written), then of keys that go together."""
        if not _NAMESPACE.match(self.namespace):
            raise ValueError(
                "namespace must be lowercase letters, digits, '_' or '.', "
                "without '-' (Fleet's data stream rules)"
            )
        if self.integrity_data_stream is not None and not _INDEX_NAME.match(self.integrity_data_stream):
            raise ValueError(
                "integrity_data_stream must be a lowercase index or data stream name "
                "(e.g. logs-trailrelay.integrity-default)"
            )
        if self.ssl_assert_fingerprint is not None:
            fingerprint = self.ssl_assert_fingerprint.strip()
            if not _FINGERPRINT.match(fingerprint):
                raise ValueError(
                    "ssl_assert_fingerprint must be a SHA-256 fingerprint: 64 hex digits, colons allowed"
                )
            if fingerprint != self.ssl_assert_fingerprint:
                msgspec.structs.force_setattr(self, "ssl_assert_fingerprint", fingerprint)
        if not self.url and not self.cloud_id:
            raise ValueError("set url (or cloud_id) for the elastic sink")
        for u in self.urls:
            url_without_credentials(u, "url")
        if self.url and self.cloud_id:
            raise ValueError("set either url or cloud_id, not both")
        if self.data_stream and self.index:
            raise ValueError("set either data_stream or index, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        methods = sum(x is not None for x in (self.api_key, self.password, self.bearer_token))
        if methods > 1:
            raise ValueError("choose one authentication: api_key, username + password, or bearer_token")

    @property
    def urls(self) -> list[str]:
        """The configured node URLs (empty with cloud_id)."""
        if self.url is None:
            return []
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @property
    def target(self) -> Target:
        """The data stream or index documents are written to."""
        if self.index:
            return Target(self.index, None)
        name = self.data_stream or f"logs-aws.cloudtrail-{self.namespace}"
        m = _DATA_STREAM_NAME.match(name)
        return Target(name, (m.group(1), m.group(2), m.group(3)) if m else None)

    @property
    def integrity_target(self) -> Target:
        """The data stream (or index) integrity events are written to."""
        name = self.integrity_data_stream or f"logs-trailrelay.integrity-{self.namespace}"
        m = _DATA_STREAM_NAME.match(name)
        return Target(name, (m.group(1), m.group(2), m.group(3)) if m else None)

    @property
    def secret_values(self) -> list[str]:
        """Plain secret values, only to scrub them from server messages before they are shown.

        Also in the other forms a proxy's error page may echo them in: basic auth's
        ``username:password`` in base64, as the Authorization header carries it, and an encoded
        API key decoded (``id:key``) and its secret half alone (``key``).
        """
        secrets = (self.api_key, self.password, self.bearer_token, self.search_api_key)
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        if self.username is not None and self.password is not None and self.password.get_secret_value():
            pair = f"{self.username}:{self.password.get_secret_value()}"
            values.append(base64.b64encode(pair.encode()).decode())
        for key in (self.api_key, self.search_api_key):
            decoded = _decoded(key.get_secret_value()) if key is not None else None
            if decoded is not None:
                values.append(decoded)
                _id, _, secret = decoded.partition(":")
                if secret:
                    values.append(secret)
        return values


def _decoded(value: str) -> str | None:
    """A base64 value (an encoded API key) as the text it encodes; None when it is not one."""
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return text if len(text) >= 8 and text.isprintable() else None

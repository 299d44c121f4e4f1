"""Typed configuration of one ``[[sinks]]`` table with ``type = "opensearch"``."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from trailrelay.contract import Meta, Secret, SentInHeader, SinkConfig, url_without_credentials

__all__ = ["DEFAULT_BATCH_BYTES", "OpenSearchConfig", "Target"]

DEFAULT_BATCH_BYTES = 10 * 1024 * 1024
"""10 MiB: Amazon OpenSearch Service accepts 10 MiB bodies on its smallest instance types."""

_NAMESPACE = re.compile(r"^[a-z0-9_][a-z0-9_.]{0,99}$")
# The logs-<dataset>-<namespace> naming scheme: such a target is written as a data stream.
_DATA_STREAM_NAME = re.compile(r"^(?:logs|metrics|traces)-[^-]+(?:-[^-]+)*-[^-]+$")
# OpenSearch index names: lowercase, not starting with - _ +, none of \/*?"<>|,# or space.
_INDEX_NAME = re.compile(r'^[a-z0-9][^A-Z\\/*?"<>|,# :]{0,254}$')
# search-<domain>-<id>.<region>.es.amazonaws.com / <collection>.<region>.aoss.amazonaws.com
_AWS_HOST = re.compile(r"\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.(?:es|aoss)\.amazonaws\.com(?:\.cn)?$")


class Target:
    """Where documents go: a data stream (``logs-<dataset>-<namespace>``) or a plain index or alias."""

    __slots__ = ("data_stream", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.data_stream = bool(_DATA_STREAM_NAME.match(name))

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


_BASIC = "which the OpenSearch client cannot send in basic authentication"
"""urllib3 (``make_headers``) encodes ``username:password`` as Latin-1 before base64."""


class OpenSearchConfig(SinkConfig):
    """Settings of the OpenSearch sink; secrets are :class:`Secret` and never printed."""

    type: Annotated[Literal["opensearch"], Meta(description="Sink type.")] = "opensearch"
    url: Annotated[
        str | list[str],
        Meta(
            description="OpenSearch URL (or list of node URLs), e.g. https://search-x.eu-west-1.es.amazonaws.com."
        ),
    ]
    index: Annotated[
        str | None,
        Meta(
            description="Plain index, alias or data stream to write to; default the data stream "
            "logs-aws.cloudtrail-<namespace>."
        ),
    ] = None
    namespace: Annotated[str, Meta(description="Namespace of the default data stream names.")] = "default"
    integrity_index: Annotated[
        str | None,
        Meta(
            description="Where integrity events go; "
            "default data stream logs-trailrelay.integrity-<namespace>."
        ),
    ] = None
    username: Annotated[
        str | None, Meta(description="User for basic authentication."), SentInHeader(why=_BASIC)
    ] = None
    password: Annotated[
        Secret | None, Meta(description="Password for basic authentication."), SentInHeader(why=_BASIC)
    ] = None
    aws_sigv4: Annotated[bool, Meta(description="Sign requests with AWS SigV4 (Amazon OpenSearch).")] = False
    aws_service: Annotated[
        Literal["es", "aoss"],
        Meta(description="SigV4 service: es (OpenSearch Service domains) or aoss (Serverless)."),
    ] = "es"
    region: Annotated[
        str | None, Meta(description="AWS region for SigV4; default from the URL, else the boto3 session.")
    ] = None
    role_arn: Annotated[str | None, Meta(description="IAM role to assume (STS) for SigV4 signing.")] = None
    ca_bundle: Annotated[
        str | None, Meta(description="PEM file of the CA(s) that signed the server certificate.")
    ] = None
    verify_tls: Annotated[bool, Meta(description="Verify the server certificate (keep on).")] = True
    retention_days: Annotated[
        int, Meta(ge=1, le=36500, description="Days `setup`'s ISM policy keeps indices before deleting them.")
    ] = 90
    batch_bytes: Annotated[
        int,
        Meta(ge=64 * 1024, le=100 * 1024 * 1024, description="Max bytes of one _bulk body (uncompressed)."),
    ] = DEFAULT_BATCH_BYTES
    batch_actions: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Max documents in one _bulk body."),
    ] = 2000
    timeout: Annotated[float, Meta(gt=0, le=600, description="Seconds to wait for one request.")] = 60.0

    def __post_init__(self) -> None:
        """Checks of single keys (as they were written), then of keys that go together."""
        urls = [self.url] if isinstance(self.url, str) else self.url
        if not urls:
            raise ValueError("url needs at least one node URL")
        for u in urls:
            if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname:
                raise ValueError("url must be http(s)://host[:port]")
            url_without_credentials(u, "url")
        if not _NAMESPACE.match(self.namespace):
            raise ValueError("namespace must be lowercase letters, digits, '_' or '.', without '-'")
        for key in ("index", "integrity_index"):
            value = getattr(self, key)
            if value is not None and not _INDEX_NAME.match(value):
                # The key is named here: an error from __post_init__ carries no key path of its own.
                raise ValueError(f"{key} must be a lowercase index, alias or data stream name")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.aws_sigv4 and self.password is not None:
            raise ValueError("choose one authentication: username + password, or aws_sigv4")
        if not self.aws_sigv4 and (self.role_arn or self.aws_service != "es"):
            raise ValueError("role_arn and aws_service apply only with aws_sigv4 = true")

    @property
    def urls(self) -> list[str]:
        """The configured node URLs."""
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @property
    def target(self) -> Target:
        """The data stream, index or alias CloudTrail documents are written to."""
        return Target(self.index or f"logs-aws.cloudtrail-{self.namespace}")

    @property
    def integrity_target(self) -> Target:
        """The data stream (or index) integrity events are written to."""
        return Target(self.integrity_index or f"logs-trailrelay.integrity-{self.namespace}")

    @property
    def url_region(self) -> str | None:
        """The AWS region named in an Amazon OpenSearch endpoint URL, if any."""
        for u in self.urls:
            m = _AWS_HOST.search(urlsplit(u).hostname or "")
            if m:
                return m.group(1)
        return None

    @property
    def auth_setting(self) -> str:
        """The settings that hold the credentials, to name in errors (never their values)."""
        if self.aws_sigv4:
            via = f"role_arn {self.role_arn}" if self.role_arn else "the boto3 credential chain"
            return f"aws_sigv4 ({self.aws_service}, {via})"
        if self.username is not None:
            return f"username {self.username} + password"
        return "no credentials configured"

    @property
    def secret_values(self) -> list[str]:
        """Plain secret values, only to scrub them from server messages before they are shown.

        With basic auth also ``username:password`` in base64, as the Authorization header carries
        it (urllib3 encodes it as latin-1): a proxy's error page may echo the request's headers.
        """
        if self.password is None or not self.password.get_secret_value():
            return []
        password = self.password.get_secret_value()
        if self.username is None:
            return [password]
        pair = f"{self.username}:{password}".encode("latin-1", "replace")
        return [password, base64.b64encode(pair).decode()]

"""Typed configuration of one ``[[sinks]]`` table with ``type = "opensearch"``."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from trailrelay.contract import SinkConfig

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


class OpenSearchConfig(SinkConfig):
    """Settings of the OpenSearch sink; secrets are SecretStr and never printed."""

    type: Literal["opensearch"] = Field(default="opensearch", description="Sink type.")
    url: str | list[str] = Field(
        description="OpenSearch URL (or list of node URLs), e.g. https://search-x.eu-west-1.es.amazonaws.com."
    )
    index: str | None = Field(
        default=None,
        description="Plain index, alias or data stream to write to; default the data stream "
        "logs-aws.cloudtrail-<namespace>.",
    )
    namespace: str = Field(default="default", description="Namespace of the default data stream names.")
    integrity_index: str | None = Field(
        default=None,
        description="Where integrity events go; default data stream logs-trailrelay.integrity-<namespace>.",
    )
    username: str | None = Field(default=None, description="User for basic authentication.")
    password: SecretStr | None = Field(default=None, description="Password for basic authentication.")
    aws_sigv4: bool = Field(default=False, description="Sign requests with AWS SigV4 (Amazon OpenSearch).")
    aws_service: Literal["es", "aoss"] = Field(
        default="es", description="SigV4 service: es (OpenSearch Service domains) or aoss (Serverless)."
    )
    region: str | None = Field(
        default=None, description="AWS region for SigV4; default from the URL, else the boto3 session."
    )
    role_arn: str | None = Field(default=None, description="IAM role to assume (STS) for SigV4 signing.")
    ca_bundle: str | None = Field(
        default=None, description="PEM file of the CA(s) that signed the server certificate."
    )
    verify_tls: bool = Field(default=True, description="Verify the server certificate (keep on).")
    retention_days: int = Field(
        default=90,
        ge=1,
        le=36500,
        description="Days `setup`'s ISM policy keeps indices before deleting them.",
    )
    batch_bytes: int = Field(
        default=DEFAULT_BATCH_BYTES,
        ge=64 * 1024,
        le=100 * 1024 * 1024,
        description="Max bytes of one _bulk body (uncompressed).",
    )
    batch_actions: int = Field(default=2000, ge=1, le=100_000, description="Max documents in one _bulk body.")
    timeout: float = Field(default=60.0, gt=0, le=600, description="Seconds to wait for one request.")

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError("namespace must be lowercase letters, digits, '_' or '.', without '-'")
        return value

    @field_validator("index", "integrity_index")
    @classmethod
    def _check_index(cls, value: str | None) -> str | None:
        if value is not None and not _INDEX_NAME.match(value):
            raise ValueError("must be a lowercase index, alias or data stream name")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("url needs at least one node URL")
        for u in urls:
            if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname:
                raise ValueError("url must be http(s)://host[:port]")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> OpenSearchConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.aws_sigv4 and self.password is not None:
            raise ValueError("choose one authentication: username + password, or aws_sigv4")
        if not self.aws_sigv4 and (self.role_arn or self.aws_service != "es"):
            raise ValueError("role_arn and aws_service apply only with aws_sigv4 = true")
        return self

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
        """Plain secret values, only to scrub them from server messages before they are shown."""
        if self.password is not None and self.password.get_secret_value():
            return [self.password.get_secret_value()]
        return []

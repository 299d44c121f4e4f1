"""``[source] type = "firehose"``: the model of the Firehose HTTP endpoint (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["FirehoseSourceConfig", "parse_listen"]

_MAX_KEY_BYTES = 4096  # Firehose's own limit on the access key


class FirehoseSourceConfig(BaseModel):
    """``[source] type = "firehose"``: accept Amazon Data Firehose HTTP endpoint deliveries."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["firehose"]
    listen: str = Field(description='HOST:PORT to listen on, e.g. "0.0.0.0:8443" or "[::]:8443".')
    access_key: SecretStr | None = Field(default=None, description="The stream's configured access key.")
    access_keys: list[SecretStr] = Field(
        default_factory=list, description="Several accepted keys, for rotation without downtime."
    )
    max_body_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        le=1 << 30,
        description="Largest request body, compressed or decompressed (Firehose sends at most 64 MiB).",
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain (TLS without a proxy).")
    tls_key: Path | None = Field(default=None, description="PEM private key for tls_cert.")
    max_concurrent_requests: int = Field(
        default=8, ge=1, le=256, description="Requests handled at once; more wait, then get 503."
    )
    response_timeout: float = Field(
        default=170.0,
        gt=0,
        le=180,
        description="Seconds to wait for the sinks before answering 503 (Firehose waits 180).",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _keys_and_tls(self) -> FirehoseSourceConfig:
        keys = self.secret_keys()
        if not keys:
            raise ValueError("set access_key (or access_keys): the endpoint refuses to run unauthenticated")
        if any(not k or len(k) > _MAX_KEY_BYTES for k in keys):
            raise ValueError(f"access keys must be 1 to {_MAX_KEY_BYTES} bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    def secret_keys(self) -> list[bytes]:
        """Every accepted access key, as bytes."""
        keys = [*([self.access_key] if self.access_key else []), *self.access_keys]
        return [k.get_secret_value().encode() for k in keys]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) as (host, port); ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT (got {value!r})")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host means every interface, as in Python
    return host, int(port)

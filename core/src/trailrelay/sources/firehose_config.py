"""``[source] type = "firehose"``: the model of the Firehose HTTP endpoint (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from trailrelay.settings import Meta, Secret, Settings, field

__all__ = ["DEFAULT_MAX_BODY_BYTES", "FirehoseSourceConfig", "parse_listen"]

_MAX_KEY_BYTES = 4096  # Firehose's own limit on the access key

DEFAULT_MAX_BODY_BYTES = 96 << 20
"""Takes Firehose's largest buffer: 64 MiB of records is 85.3 MiB as base64, plus ~12 bytes a record."""


class FirehoseSourceConfig(Settings):
    """``[source] type = "firehose"``: accept Amazon Data Firehose HTTP endpoint deliveries."""

    type: Literal["firehose"]
    listen: Annotated[str, Meta(description='HOST:PORT to listen on, e.g. "0.0.0.0:8443" or "[::]:8443".')]
    access_key: Annotated[Secret | None, Meta(description="The stream's configured access key.")] = None
    access_keys: Annotated[
        list[Secret], Meta(description="Several accepted keys, for rotation without downtime.")
    ] = field(default_factory=list)
    max_body_bytes: Annotated[
        int,
        Meta(
            ge=1024,
            le=1 << 30,
            description="Largest request body, compressed or decompressed, and the most its records may "
            "unpack to together (a record past it is dead-lettered). Records travel as base64 in JSON, "
            "so Firehose's largest buffer (64 MiB of records) arrives as about 86 MiB.",
        ),
    ] = DEFAULT_MAX_BODY_BYTES
    tls_cert: Annotated[Path | None, Meta(description="PEM certificate chain (TLS without a proxy).")] = None
    tls_key: Annotated[Path | None, Meta(description="PEM private key for tls_cert.")] = None
    max_concurrent_requests: Annotated[
        int, Meta(ge=1, le=256, description="Requests handled at once; more wait, then get 503.")
    ] = 8
    response_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=180,
            description="Seconds to wait for the sinks before answering 503 (Firehose waits 180).",
        ),
    ] = 170.0

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        keys = self.secret_keys()
        if not keys:
            raise ValueError("set access_key (or access_keys): the endpoint refuses to run unauthenticated")
        if any(not k or len(k) > _MAX_KEY_BYTES for k in keys):
            raise ValueError(f"access keys must be 1 to {_MAX_KEY_BYTES} bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")

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

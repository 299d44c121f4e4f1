"""``[integrity]``: the model of the integrity checks while forwarding (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from trailrelay.errors import ConfigError
from trailrelay.settings import Meta, Settings, field

__all__ = ["DIGEST_LAG_SECONDS", "IntegrityConfig"]

DIGEST_LAG_SECONDS = 7200.0
"""CloudTrail digests a log file within about two hours (``trailrelay.integrity.verifier.DIGEST_LAG``)."""


class IntegrityConfig(Settings):
    """``[integrity]``: check CloudTrail's digests while forwarding and send one event per digest."""

    enabled: Annotated[bool, Meta(description="Check digests and send integrity events.")] = False
    every: Annotated[
        float,
        Meta(
            gt=0,
            description="Seconds between checks on an SQS source (a listing source is checked once, when "
            "everything it read is delivered).",
        ),
    ] = 3600.0
    lookback: Annotated[float, Meta(gt=0)] | None = None
    """Seconds back each periodic check looks: digests that ended in that time, and log
    files delivered in it until two hours ago (younger ones are not digested yet). At least
    every + 7200 so no digest or log file falls between checks; default every + 7200."""
    bucket: Annotated[
        str | None,
        Meta(description="Bucket of the trail's digests; default the S3 source's (required for SQS)."),
    ] = None
    prefix: Annotated[str | None, Meta(description="Key prefix above AWSLogs/; default the source's.")] = None
    region: Annotated[str | None, Meta(description="Region of the bucket; default the source's.")] = None
    role_arn: Annotated[str | None, Meta(description="Role to read digests and public keys as.")] = None
    public_keys: Annotated[
        dict[str, Path],
        Meta(
            description="FINGERPRINT = key file (DER PKCS#1 as ListPublicKeys returns it, or PEM) for "
            "offline checks; with any given, CloudTrail's ListPublicKeys is not called."
        ),
    ] = field(default_factory=dict)
    workers: Annotated[int, Meta(ge=1, le=64, description="Parallel reads during a check.")] = 4

    def __post_init__(self) -> None:
        if self.lookback is not None and self.lookback < self.every + DIGEST_LAG_SECONDS:
            raise ValueError(
                "lookback must be at least every + 7200 seconds, or digests and log files fall "
                "between two checks"
            )

    @property
    def window_seconds(self) -> float:
        """The lookback of periodic checks, in seconds."""
        return self.lookback if self.lookback is not None else self.every + DIGEST_LAG_SECONDS

    def check_source(self, source: Any) -> None:
        """ConfigError when checks cannot work with this source (which objects, which bucket)."""
        if not self.enabled:
            return
        kind = getattr(source, "type", None)
        if kind not in ("s3", "files", "sqs"):
            raise ConfigError(
                f"integrity: needs an s3, files or sqs source (a {kind} source delivers events, not "
                "the log files CloudTrail's digests sign)"
            )
        if kind == "sqs" and not self.bucket:
            raise ConfigError(
                "integrity.bucket: required with an sqs source (the bucket CloudTrail delivers to)"
            )

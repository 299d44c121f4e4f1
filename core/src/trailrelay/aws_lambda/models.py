"""The ``[source] type = "lambda"`` table: how the Lambda handler reads what an event names."""

from __future__ import annotations

from typing import Annotated, Literal

from trailrelay.settings import Meta, Settings

__all__ = ["LambdaSourceConfig"]


class LambdaSourceConfig(Settings):
    """``[source] type = "lambda"`` (the default in a Lambda config): each event is the source."""

    type: Literal["lambda"] = "lambda"
    region: Annotated[str | None, Meta(description="AWS region of the trail bucket.")] = None
    endpoint_url: Annotated[str | None, Meta(description="S3-compatible endpoint (tests).")] = None
    role_arn: Annotated[str | None, Meta(description="Role to assume to read the bucket.")] = None
    insights: Annotated[bool, Meta(description="Also read CloudTrail-Insight objects.")] = False
    stop_before_timeout: Annotated[
        float,
        Meta(
            ge=0,
            le=900,
            description="Take no new work once the invocation has less than this many seconds left.",
        ),
    ] = 20.0
    finish_before_timeout: Annotated[
        float,
        Meta(
            ge=0,
            le=900,
            description="Work still in flight this close to the timeout is handed back for redelivery.",
        ),
    ] = 3.0

    def __post_init__(self) -> None:
        if self.finish_before_timeout > self.stop_before_timeout:
            raise ValueError("finish_before_timeout must not exceed stop_before_timeout")

"""The ``[source] type = "lambda"`` table: how the Lambda handler reads what an event names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LambdaSourceConfig"]


class LambdaSourceConfig(BaseModel):
    """``[source] type = "lambda"`` (the default in a Lambda config): each event is the source."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["lambda"] = "lambda"
    region: str | None = Field(default=None, description="AWS region of the trail bucket.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (tests).")
    role_arn: str | None = Field(default=None, description="Role to assume to read the bucket.")
    insights: bool = Field(default=False, description="Also read CloudTrail-Insight objects.")
    stop_before_timeout: float = Field(
        default=20.0,
        ge=0,
        le=900,
        description="Take no new work once the invocation has less than this many seconds left.",
    )
    finish_before_timeout: float = Field(
        default=3.0,
        ge=0,
        le=900,
        description="Work still in flight this close to the timeout is handed back for redelivery.",
    )

    @model_validator(mode="after")
    def _margins(self) -> LambdaSourceConfig:
        if self.finish_before_timeout > self.stop_before_timeout:
            raise ValueError("finish_before_timeout must not exceed stop_before_timeout")
        return self

"""``[doctor]``: what ``trailrelay doctor`` checks and what it expects (all keys optional)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DoctorConfig"]


class DoctorConfig(BaseModel):
    """``[doctor]`` in the configuration file; command-line options override these."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    trail: str | None = Field(
        default=None,
        description="Name or ARN of the trail to check; default: the trails delivering to `bucket` "
        "(or to the source's bucket), else every trail this account can see.",
    )
    bucket: str | None = Field(
        default=None,
        description="The trail's log bucket; default the S3 source's, `[integrity] bucket`, or the "
        "bucket of the checked trail.",
    )
    region: str | None = Field(
        default=None, description="Region to call CloudTrail in; default the source's, then the SDK's."
    )
    retention_days: int = Field(
        default=365,
        ge=1,
        le=36500,
        description="Log files must be kept at least this long: the bucket's Object Lock default "
        "retention (compliance mode) and any lifecycle expiration are held against it.",
    )
    fast_path: bool = Field(
        default=True,
        description="Expect the EventBridge fast path (deploy/eventbridge-lambda): a rule for the "
        "detection pack's high-risk calls in each of `fast_path_regions`.",
    )
    fast_path_regions: list[str] = Field(
        default_factory=list,
        description="Regions that must have the fast-path rule (CloudTrail sends each call to "
        "EventBridge in the region it was made); default the checked trails' home regions.",
    )
    send: bool = Field(
        default=False,
        description="Send each finding as an event to every configured sink (like integrity events), "
        "as `trailrelay doctor --send` does.",
    )
    role_arn: str | None = Field(
        default=None, description="Role to assume for the reads; default the source's."
    )

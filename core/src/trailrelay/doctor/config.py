"""``[doctor]``: what ``trailrelay doctor`` checks and what it expects (all keys optional)."""

from __future__ import annotations

from typing import Annotated

from trailrelay.settings import Meta, Settings, field

__all__ = ["DoctorConfig"]


class DoctorConfig(Settings):
    """``[doctor]`` in the configuration file; command-line options override these."""

    trail: Annotated[
        str | None,
        Meta(
            description="Name or ARN of the trail to check; default: the trails delivering to `bucket` "
            "(or to the source's bucket), else every trail this account can see."
        ),
    ] = None
    bucket: Annotated[
        str | None,
        Meta(
            description="The trail's log bucket; default the S3 source's, `[integrity] bucket`, or the "
            "bucket of the checked trail."
        ),
    ] = None
    region: Annotated[
        str | None, Meta(description="Region to call CloudTrail in; default the source's, then the SDK's.")
    ] = None
    retention_days: Annotated[
        int,
        Meta(
            ge=1,
            le=36500,
            description="Log files must be kept at least this long: the bucket's Object Lock default "
            "retention (compliance mode) and any lifecycle expiration are held against it.",
        ),
    ] = 365
    fast_path: Annotated[
        bool,
        Meta(
            description="Expect the EventBridge fast path (deploy/eventbridge-lambda): a rule for the "
            "detection pack's high-risk calls in each of `fast_path_regions`."
        ),
    ] = True
    fast_path_regions: Annotated[
        list[str],
        Meta(
            description="Regions that must have the fast-path rule (CloudTrail sends each call to "
            "EventBridge in the region it was made); default the checked trails' home regions."
        ),
    ] = field(default_factory=list)
    send: Annotated[
        bool,
        Meta(
            description="Send each finding as an event to every configured sink (like integrity events), "
            "as `trailrelay doctor --send` does."
        ),
    ] = False
    role_arn: Annotated[
        str | None, Meta(description="Role to assume for the reads; default the source's.")
    ] = None

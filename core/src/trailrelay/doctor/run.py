"""One doctor run: settings from the config and options, then trail, bucket and forwarding checks."""

from __future__ import annotations

import os
from typing import Any

from trailrelay.config import Config, S3SourceConfig, SqsSourceConfig
from trailrelay.doctor.aws import Clients
from trailrelay.doctor.bucket import check_bucket
from trailrelay.doctor.context import Context, Settings
from trailrelay.doctor.findings import Report
from trailrelay.doctor.forwarding import check_fast_path, check_notifications, check_queue
from trailrelay.doctor.trail import check_trails, organization_id

__all__ = ["PERMISSIONS", "run_doctor", "settings_from"]

PERMISSIONS = (
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetEventSelectors",
    "cloudtrail:GetTrailStatus",
    "events:DescribeRule",
    "events:ListRuleNamesByTarget",
    "events:ListRules",
    "events:ListTargetsByRule",
    "organizations:DescribeOrganization",
    "s3:GetAccountPublicAccessBlock",
    "s3:GetBucketNotification",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:ListBucket",
    "sns:ListSubscriptionsByTopic",
    "sqs:GetQueueAttributes",
)
"""Every permission a run may use; all are reads (``trailrelay doctor --permissions``)."""


def settings_from(config: Config | None, **overrides: Any) -> tuple[Settings, dict[str, str | None]]:
    """The run's settings (``[doctor]``, the source, then non-None ``overrides``) and client options."""
    values: dict[str, Any] = {}
    client: dict[str, str | None] = {"endpoint_url": None, "role_arn": None}
    if config is not None:
        doc, src = config.doctor, config.source
        bucket = doc.bucket or (src.bucket if isinstance(src, S3SourceConfig) else config.integrity.bucket)
        region = doc.region or getattr(src, "region", None)
        values = {
            "trail": doc.trail,
            "bucket": bucket,
            "region": region,
            "retention_days": doc.retention_days,
            "fast_path": doc.fast_path,
            "fast_path_regions": tuple(doc.fast_path_regions),
            "forwarding": True,
        }
        if isinstance(src, SqsSourceConfig):
            values["queue_url"] = src.queue_url
            values["queue_region"] = src.region or region
        client = {
            "endpoint_url": getattr(src, "endpoint_url", None),
            "role_arn": doc.role_arn or getattr(src, "role_arn", None),
        }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("region"):
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return Settings(**values), client


def run_doctor(settings: Settings, clients: Clients) -> Report:
    """Every check; findings (and passes) in the returned report."""
    ctx = Context(clients, settings)
    report = ctx.report
    report.context.update(
        {"region": settings.region, "retention_days": settings.retention_days, "queue": settings.queue_url}
    )
    org = organization_id(ctx)
    report.context["organization"] = org[1]
    trails = check_trails(ctx, org)

    buckets: dict[str, list[dict[str, Any]]] = {}
    if settings.bucket:
        buckets[settings.bucket] = [t for t in trails if t.get("S3BucketName") == settings.bucket]
    else:
        for t in trails:
            if t.get("S3BucketName"):
                buckets.setdefault(str(t["S3BucketName"]), []).append(t)
    report.context["buckets"] = sorted(buckets)
    for bucket, writers in buckets.items():
        prefix = str(writers[0].get("S3KeyPrefix") or "") if writers else ""
        kms = bool(writers) and all(t.get("KmsKeyId") for t in writers)
        check_bucket(ctx, bucket, prefix, kms=kms, trail_arn=str(writers[0]["TrailARN"]) if writers else None)

    if not settings.forwarding:
        report.notes.append(
            "no configuration given: the queue, notification and fast-path checks were skipped"
        )
        return report
    log_bucket = settings.bucket or (next(iter(buckets)) if buckets else None)
    prefix = ""
    if log_bucket and buckets.get(log_bucket):
        prefix = str(buckets[log_bucket][0].get("S3KeyPrefix") or "")
    queue_arn = check_queue(ctx, log_bucket, prefix)
    if queue_arn and log_bucket:
        writers = buckets.get(log_bucket) or []
        check_notifications(ctx, log_bucket, prefix, queue_arn, trails=writers, org_id=org[1])
    elif settings.queue_url is None:
        report.notes.append("the source is not an SQS queue: queue and notification checks do not apply")
    if settings.fast_path:
        regions = list(settings.fast_path_regions) or sorted(
            {str(t.get("HomeRegion")) for t in trails if t.get("HomeRegion")}
            or ({settings.region} if settings.region else set())
        )
        report.context["fast_path_regions"] = regions
        check_fast_path(ctx, regions)
    return report
